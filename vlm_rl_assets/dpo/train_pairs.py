"""DPO of the base model on a table of judged pairs into the store's checkpoint: the one path both training assets
(`dpo_checkpoint[c]`, `policy_checkpoint`) take.

Each pair trains with the `beta` its row carries (stamped from `categories.<c>.beta` by judged_pairs) and with the
base model's reference log-probs from the cache beside the pairs, so no reference copy is held (with LoRA too).
The run is a job in a work folder keyed by what determines its weights, so a killed run resumes there; the folder
goes once the checkpoint is published.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.dpo.health import probe_lengths, training_health
from vlm_rl_assets.dpo.reference_cache import with_reference_logps
from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.model.settings import ModelSettings
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.rollouts.engine import SamplingParams
from vlm_rl_assets.rollouts.open import open_engine
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.training.health import Health
from vlm_rl_assets.training.settings import HealthSettings, TrainingSettings

CURVE_COLUMNS = ("step", "loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


@dataclass
class TrainedCheckpoint:
    uri: str  # the published checkpoint
    settings: TrainingSettings  # what it trained with...
    loss: DPOSettings  # ...and its loss
    pairs: pl.DataFrame  # the pairs it trained on, with their reference log-probs
    reference_logps_computed: int  # pairs whose reference log-probs were not cached yet
    result: TrainResult
    health: Health

    def curve(self) -> pl.DataFrame:
        """The logged training metrics by step."""
        logged = [entry for entry in self.result.history if "loss" in entry]
        return pl.DataFrame(logged).select(c for c in CURVE_COLUMNS if c in logged[0])


def train_pairs(
    store: Store,
    pairs: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    base_dir: Path,
    asset: str,
    key: str,
    settings: TrainingSettings,
    loss: DPOSettings,
    *,
    model: ModelSettings,
    engine: EngineSettings,
    health: HealthSettings,
    cache_dir: Path,
    log: Callable[[str], None],
    reference_dir: Path | None = None,
) -> TrainedCheckpoint:
    """DPO with `loss` of `base_dir` on `pairs` (with their decoded `images`) into the store's checkpoint `<asset>/<key>`, on
    `settings.num_processes` processes, anchored to `reference_dir`'s log-probs (default: `base_dir`'s); the length
    probe for the health check runs greedy with `engine`'s settings. Unfinished runs wait in `settings.work_dir`
    (empty: `<cache_dir>/training`)."""
    # heavy (torch, TRL: ~11 s): imported when training runs, not when the code location loads
    import torch

    from vlm_rl_assets.dpo.job import DPOJob, write_job
    from vlm_rl_assets.dpo.launch import launch_job
    from vlm_rl_assets.dpo.training import PreferencePair, reference_logps

    torch.set_num_threads(model.torch_threads)
    examples = [
        PreferencePair(row["prompt_text"], imgs, row["chosen"], row["rejected"], beta=row["beta"])
        for row, imgs in zip(pairs.iter_rows(named=True), images)
    ]
    reference_dir = reference_dir or base_dir
    pairs, computed = with_reference_logps(
        store,
        model_fingerprint(reference_dir),
        pairs,
        lambda rows: reference_logps(reference_dir, [examples[i] for i in rows], batch_size=settings.batch_size),
    )
    log(f"reference log-probs: {computed} computed, {pairs.height - computed} read from the cache")
    examples = [
        dataclasses.replace(ex, ref_chosen_logps=chosen, ref_rejected_logps=rejected)
        for ex, chosen, rejected in zip(examples, pairs["ref_chosen_logps"], pairs["ref_rejected_logps"])
    ]
    work_root = Path(settings.work_dir or cache_dir / "training") / asset / key
    threads = max(1, model.torch_threads // settings.num_processes)  # the processes share the CPU
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=engine.max_new_tokens, seed=engine.seed)
    with store.staged_dir(asset, key, like=base_dir) as out_dir:  # saved like the model it trains
        job = DPOJob(str(base_dir), str(out_dir), settings, loss, torch_threads=threads)
        job_dir = write_job(work_root, job, examples, model_fingerprint(base_dir))
        log(f"training in {job_dir} on {settings.num_processes} process(es); a rerun resumes there")
        result = launch_job(job_dir, job, model.device, log).count_cost()
        lengths = probe_lengths(
            pairs, images, base_dir, out_dir, lambda m: open_engine(engine, model, m), health.length_sample, greedy
        )
    shutil.rmtree(job_dir)  # published: nothing left to resume
    checked = training_health(result.history, health, lengths)
    return TrainedCheckpoint(store.checkpoint_uri(asset, key), settings, loss, pairs, computed, result, checked)
