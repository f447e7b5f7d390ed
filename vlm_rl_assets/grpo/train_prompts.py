"""GRPO of the base model on train prompts into the store's checkpoint, rewarded by the categories' judges: the path
of both training assets under `training.algorithm: grpo`, publishing the same `save_pretrained` folder as DPO's
`train_pairs`, so benchmark_scores and release_report score it unchanged.

Completions the judge fails on are never scored (see `reward.py`); they are written to
`quarantine/<asset>_rewards/<key>` with their reasons, and the run fails, publishing nothing, when they exceed
`max_bad_fraction` of the judged completions (as filtered_rollouts does).

The run trains in a work folder keyed by what determines its weights (`training.grpo_work_folder`), so a killed run
resumes there from its last checkpoint; the folder goes once the checkpoint is published, or the judges' failures
rejected the run. The quarantine and the failure fraction of a resumed run cover the steps since the resume.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.grpo.health import grpo_health
from vlm_rl_assets.grpo.reward import JudgeReward
from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.model.settings import ModelSettings
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.training.health import Health
from vlm_rl_assets.training.settings import HealthSettings, TrainingSettings

CURVE_COLUMNS = ("step", "loss", "reward", "reward_std", "kl", "completions/mean_length", "frac_reward_zero_std")


@dataclass
class TrainedPolicy:
    uri: str  # the published checkpoint
    settings: TrainingSettings  # what it trained with...
    grpo: GRPOSettings  # ...and GRPO's own
    prompts: pl.DataFrame  # the train prompts it sampled from
    judged: int  # completions given to the judges
    failures: pl.DataFrame  # quarantine rows: completions a judge could not score (left out of their group)
    failure_counts: dict[str, int]  # by failure code
    result: TrainResult
    health: Health

    def curve(self) -> pl.DataFrame:
        """The logged training metrics by step."""
        logged = [{k: entry.get(k) for k in CURVE_COLUMNS} for entry in self.result.history if "loss" in entry]
        return pl.DataFrame(logged, schema={k: pl.Float64 for k in CURVE_COLUMNS}).select(
            c for c in CURVE_COLUMNS if any(row[c] is not None for row in logged)
        )


def train_prompts(
    store: Store,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    rewards: Sequence[JudgeReward],
    base_dir: Path,
    asset: str,
    key: str,
    settings: TrainingSettings,
    grpo: GRPOSettings,
    *,
    model: ModelSettings,
    health: HealthSettings,
    max_bad_fraction: float,
    cache_dir: Path,
    log: Callable[[str], None],
) -> TrainedPolicy:
    """GRPO (`grpo`) of `base_dir` on `prompts` (prompt-table rows with their decoded `images`), each completion rewarded by
    the `rewards` of its category, into the store's checkpoint `<asset>/<key>`. Unfinished runs wait in
    `settings.work_dir` (empty: `<cache_dir>/training`)."""
    # heavy (torch, TRL: ~11 s): imported when training runs, not when the code location loads
    import torch

    from vlm_rl_assets.grpo.training import RLPrompt, grpo_train, grpo_work_folder

    torch.set_num_threads(model.torch_threads)
    examples = [
        RLPrompt(row["prompt_id"], row["prompt_text"], imgs) for row, imgs in zip(prompts.iter_rows(named=True), images)
    ]
    judges = [reward.__name__ for reward in rewards]
    log(f"GRPO on {len(examples)} prompts, {grpo.num_generations} completions each per step, judged by {judges}")
    rewards_table = f"{asset}_rewards"  # quarantine/<asset>_rewards/<key>: the completions no judge scored
    work_root = Path(settings.work_dir or cache_dir / "training") / asset / key
    identities = [reward.identity() for reward in rewards]
    work_dir = grpo_work_folder(work_root, model_fingerprint(base_dir), examples, identities, settings, grpo)
    log(f"training in {work_dir}; a rerun resumes there")
    with store.staged_dir(asset, key, like=base_dir) as out_dir:  # saved like the model it trains
        result = grpo_train(base_dir, out_dir, examples, rewards, settings, grpo, log, work_dir)
        judged = sum(reward.judged for reward in rewards)
        failures = pl.concat([quarantine.rows(rewards_table, r.__name__, r.failures) for r in rewards])
        store.write_table("quarantine", f"{rewards_table}/{key}", failures, schemas.QUARANTINE)
        counts = dict(sorted(sum((Counter(r.failure_counts()) for r in rewards), Counter()).items()))
        if failures.height / max(judged, 1) > max_bad_fraction:
            shutil.rmtree(work_dir)  # a rerun trains afresh rather than resume a rejected run past the check
            raise ValueError(  # raised inside staged_dir: nothing is published
                f"{asset}[{key}]: the judges failed on {failures.height} of {judged} GRPO completions ({counts}), "
                f"above max_bad_fraction={max_bad_fraction}; nothing was published. See "
                f"{store.table_uri('quarantine', f'{rewards_table}/{key}')}; check judges.<kind> (endpoint, timeout_s, "
                "max_retries) or the ground truths of the prompts named there, or raise max_bad_fraction"
            )
    shutil.rmtree(work_dir)  # published: nothing left to resume
    checked = grpo_health(result.history, health)
    uri = store.checkpoint_uri(asset, key)
    return TrainedPolicy(uri, settings, grpo, prompts, judged, failures, counts, result, checked)
