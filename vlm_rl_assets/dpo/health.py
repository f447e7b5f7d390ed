"""Alarms on a DPO run: the failure modes seen on this stack, each named with its numbers and its fix.

Read from TRL's log history (NaN loss, a big or a steady fall of `logps/chosen`, early saturation of
`rewards/accuracies`) and, when given, from mean lengths of the pairs and of base vs. trained generations
(DPO learning "longer wins").
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest, SamplingParams
from vlm_rl_assets.training.health import Health, finite_loss, series
from vlm_rl_assets.training.settings import HealthSettings


@dataclass(frozen=True)
class Lengths:
    """Mean lengths around a run: of the pairs' halves (words) and of greedy generations (tokens) on a sample of
    prompts before and after training."""

    chosen_words: float
    rejected_words: float
    base_tokens: float
    policy_tokens: float

    @property
    def drift(self) -> float:
        """Relative change of the mean generated length: 0.3 is 30% longer after training."""
        return self.policy_tokens / self.base_tokens - 1 if self.base_tokens > 0 else 0.0


def training_health(
    history: Sequence[dict[str, float]], thresholds: HealthSettings = HealthSettings(), lengths: Lengths | None = None
) -> Health:
    """Every alarm of a run from its TRL log history (entries with a `loss`), plus length drift when `lengths` is
    given; `alarms` is empty when healthy."""
    logged = [entry for entry in history if "loss" in entry]
    health = Health()
    finite_loss(logged, health)
    _chosen_drop(logged, thresholds, health)
    _chosen_trend(logged, thresholds, health)
    _saturation(logged, thresholds, health)
    _not_separating(logged, thresholds, health)
    if lengths is not None:
        _length_drift(lengths, thresholds, health)
    return health


def _chosen_drop(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    chosen = [value for _, value in series(logged, "logps/chosen")]
    if not chosen:
        return
    drop = chosen[0] - min(chosen)
    health.metrics["chosen_logps_drop"] = drop
    if drop > thresholds.max_chosen_logp_drop:
        health.alarms.append(
            f"logps/chosen fell {drop:.1f} nats ({chosen[0]:.2f} -> {min(chosen):.2f}), more than "
            f"{thresholds.max_chosen_logp_drop:g}: the policy is unlearning its chosen answers (format collapse); lower "
            "training.learning_rate, raise the category's beta, or add an sft term (training.loss_type: [sigmoid, sft])"
        )


def _chosen_trend(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    """A steady fall: the least-squares slope of logps/chosen over the logged steps is below the threshold and most
    consecutive logged differences are negative (one noisy drop does not make a trend, nor does a flat run)."""
    points = series(logged, "logps/chosen")
    if len(points) < thresholds.min_trend_points:
        return
    slope = _slope(points)
    falls = [b < a for (_, a), (_, b) in zip(points, points[1:])]
    share = sum(falls) / len(falls)
    health.metrics["chosen_logps_slope"] = slope
    health.metrics["chosen_logps_falling_share"] = share
    if slope < thresholds.chosen_logps_slope and share >= thresholds.falling_share:
        health.alarms.append(
            f"logps/chosen falls steadily: {slope:.3g} nats/step (least squares over {len(points)} logged points, "
            f"below {thresholds.chosen_logps_slope:g}), {share:.0%} of consecutive differences negative: DPO is "
            "lowering the chosen answers' likelihood along with the rejected ones; add an sft term "
            "(training.loss_type: [sigmoid, sft]), raise the category's beta, or lower training.learning_rate"
        )


def _slope(points: Sequence[tuple[float, float]]) -> float:
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def _saturation(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    """rewards/accuracies at the threshold by the first `saturation_window` of the steps (at the latest by the first
    logged step, since a run logged every few steps shows nothing earlier)."""
    points = series(logged, "rewards/accuracies")
    if not points:
        return
    saturated = [step for step, accuracy in points if accuracy >= thresholds.saturation_accuracy]
    health.metrics["saturation_step"] = saturated[0] if saturated else None
    last_step = points[-1][0]
    window = max(thresholds.saturation_window * last_step, points[0][0])
    if saturated and saturated[0] <= window:
        health.alarms.append(
            f"rewards/accuracies reached {thresholds.saturation_accuracy:g} by step {saturated[0]:g} of {last_step:g} "
            f"(within the first {thresholds.saturation_window:.0%}): the pairs are too easy to tell apart, typically "
            "off-policy chosen answers (pairing.chosen_source: ground_truth) or a split where chosen and rejected differ "
            "in form, not correctness; DPO then learns a style shortcut. Pair on-policy samples "
            "(pairing.chosen_source: policy) and balance their lengths (pairing.max_length_ratio)"
        )


def _not_separating(logged: Sequence[dict[str, float]], thresholds: HealthSettings, health: Health) -> None:
    """rewards/accuracies near chance over the second half of the run: the policy cannot tell the chosen halves from
    the rejected ones even on its training pairs, so they differ in something it cannot see (seen on the embedded
    default's scene and describe: shapes and positions it only guesses) and only add noise to a mixture."""
    points = series(logged, "rewards/accuracies")
    late = [accuracy for step, accuracy in points if step > points[-1][0] / 2] if points else []
    if len(late) < 2:
        return
    mean = sum(late) / len(late)
    health.metrics["late_reward_accuracy"] = mean
    if mean < thresholds.min_reward_accuracy:
        health.alarms.append(
            f"rewards/accuracies averaged {mean:.2f} over the second half of the run (below "
            f"{thresholds.min_reward_accuracy:g}): the policy does not learn to tell chosen from rejected, so the pairs "
            "differ in what it cannot perceive or the judge's verdicts are noise; check the judge (judge_calibration) "
            "and the pairs, and consider the category's mixture_weight: 0 so its pairs do not add noise to the policy"
        )


def _length_drift(lengths: Lengths, thresholds: HealthSettings, health: Health) -> None:
    drift = lengths.drift
    health.metrics.update(
        length_drift=drift,
        base_mean_tokens=lengths.base_tokens,
        policy_mean_tokens=lengths.policy_tokens,
        chosen_mean_words=lengths.chosen_words,
        rejected_mean_words=lengths.rejected_words,
    )
    if abs(drift) <= thresholds.max_length_drift:
        return
    health.alarms.append(
        f"mean generated length drifted {drift:+.0%} ({lengths.base_tokens:.1f} -> {lengths.policy_tokens:.1f} tokens, "
        f"beyond ±{thresholds.max_length_drift:.0%}); the pairs' chosen halves average {lengths.chosen_words:.1f} words, "
        f"rejected {lengths.rejected_words:.1f}: DPO learns whichever length wins. Balance the pairs' lengths "
        "(pairing.max_length_ratio, e.g. 1.5), use a length-normalised loss (training.loss_type: sigmoid_norm), "
        "or raise the category's beta"
    )


def probe_lengths(
    pairs: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    base_dir: Path,
    model_dir: Path,
    open_engine: Callable[[Path], Engine],
    sample: int,
    greedy: SamplingParams,
) -> Lengths | None:
    """Mean words of the pairs' halves and mean greedy tokens of base vs. trained model on the first `sample`
    distinct prompts of `pairs` (by prompt_id); None when `sample` is 0. Only training has both models at hand,
    and the curves alone cannot show "longer wins"."""
    if sample == 0:
        return None
    first: dict[str, int] = {}
    for i, prompt_id in sorted(enumerate(pairs["prompt_id"]), key=lambda item: item[1]):
        first.setdefault(prompt_id, i)
    requests = [GenerationRequest(pairs["prompt_text"][i], images[i]) for i in list(first.values())[:sample]]

    def mean_tokens(model: Path) -> float:
        with open_engine(model) as engine:  # closed before the next opens: vLLM holds a share of the whole GPU
            completions = engine.generate(requests, greedy)
        return statistics.fmean(completion.n_tokens for (completion,) in completions)

    def mean_words(column: str) -> float:
        return statistics.fmean(len(text.split()) for text in pairs[column])

    return Lengths(mean_words("chosen"), mean_words("rejected"), mean_tokens(base_dir), mean_tokens(model_dir))
