"""Alarms on a GRPO run, read from TRL's log history like DPO's (dpo/health.py; the record both fill and its readers
of the history: training/health.py): each names its numbers and its fix.

GRPO fails differently from DPO: groups whose completions all get one reward carry no advantage (nothing learned),
the policy runs away from the base model (KL), completions collapse to a few tokens or run into
max_completion_length, and the ratio clipping binds on many tokens.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from vlm_rl_assets.training.health import Health, finite_loss, series
from vlm_rl_assets.training.settings import HealthSettings

LENGTH = "completions/mean_length"
TRUNCATED = "completions/clipped_ratio"  # TRL's name: completions cut at max_completion_length
ZERO_STD = "frac_reward_zero_std"
CLIPPED = "clip_ratio/region_mean"  # tokens whose policy ratio left [1 - epsilon, 1 + epsilon]


def grpo_health(history: Sequence[dict[str, float]], thresholds: HealthSettings = HealthSettings()) -> Health:
    """Every alarm of a GRPO run from its log history (entries with a `loss`); `alarms` is empty when healthy."""
    logged = [entry for entry in history if "loss" in entry]
    health = Health()
    finite_loss(logged, health)
    _rewards(logged, health)
    _no_signal(logged, thresholds, health)
    _kl(logged, thresholds, health)
    _length(logged, thresholds, health)
    _truncated(logged, thresholds, health)
    clipped = [value for _, value in series(logged, CLIPPED)]
    if clipped:
        health.metrics["clip_ratio_mean"] = statistics.fmean(clipped)
    return health


def _values(logged: Sequence[dict[str, float]], key: str) -> list[float]:
    return [value for _, value in series(logged, key)]


def _rewards(logged: Sequence[dict[str, float]], health: Health) -> None:
    """Mean reward at the first and last logged step, and of each category's reward function (rewards/<c>/mean)."""
    rewards = _values(logged, "reward")
    if rewards:
        health.metrics.update(reward_first=rewards[0], reward_last=rewards[-1])
    stds = _values(logged, "reward_std")
    if stds:
        health.metrics["reward_std_mean"] = statistics.fmean(stds)
    names = sorted({key for entry in logged for key in entry if key.startswith("rewards/") and key.endswith("/mean")})
    for name in names:
        values = _values(logged, name)
        if values:
            health.metrics[f"reward_last/{name.removeprefix('rewards/').removesuffix('/mean')}"] = values[-1]


def _no_signal(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    shares = _values(logged, ZERO_STD)
    if not shares:
        return
    share = statistics.fmean(shares)
    health.metrics["zero_std_share"] = share
    if share > thresholds.max_zero_std_share:
        health.alarms.append(
            f"{share:.0%} of the groups got one reward for all their completions on average (above "
            f"{thresholds.max_zero_std_share:.0%}): no advantage, so GRPO learned almost nothing. The prompts are too "
            "easy or too hard for the policy, or the judge too coarse; sample more per group (training.grpo."
            "num_generations), raise training.grpo.temperature, or pick prompts the policy solves sometimes"
        )


def _kl(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    kl = _values(logged, "kl")
    if not kl:
        return  # grpo.beta 0: TRL computes no KL
    health.metrics.update(kl_last=kl[-1], kl_max=max(kl))
    if max(kl) > thresholds.max_kl:
        health.alarms.append(
            f"the per-token KL to the base model reached {max(kl):.3g} (above {thresholds.max_kl:g}): the policy moved "
            "far from the base model, typically by gaming the judge or collapsing its format; raise training.grpo.beta "
            "or lower training.learning_rate"
        )


def _length(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    lengths = _values(logged, LENGTH)
    if len(lengths) < 2 or lengths[0] <= 0:
        return
    drift = lengths[-1] / lengths[0] - 1
    health.metrics.update(length_first=lengths[0], length_last=lengths[-1], length_drift=drift)
    if abs(drift) > thresholds.max_length_drift:
        way = "collapsing" if drift < 0 else "growing"
        health.alarms.append(
            f"the mean completion length went {drift:+.0%} ({lengths[0]:.1f} -> {lengths[-1]:.1f} tokens, beyond "
            f"±{thresholds.max_length_drift:.0%}): completions are {way}, which the judge may be rewarding rather than "
            "correctness; check the judge's verdicts on short and long answers (judge_calibration), raise "
            "training.grpo.beta, or use a length-unbiased loss (training.grpo.loss_type: dr_grpo)"
        )


def _truncated(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    points = series(logged, TRUNCATED)
    late = [value for step, value in points if step > points[-1][0] / 2] if points else []
    if not late:
        return
    share = statistics.fmean(late)
    health.metrics["truncated_share"] = share
    if share > thresholds.max_truncated_share:
        health.alarms.append(
            f"{share:.0%} of the completions over the second half of the run hit max_completion_length (above "
            f"{thresholds.max_truncated_share:.0%}): their answers are cut off before the judge sees them; raise "
            "training.grpo.max_completion_length"
        )
