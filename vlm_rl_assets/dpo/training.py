"""DPO for the VLM through TRL, as plain functions (no Dagster): each pair with its own beta, the reference's
log-probs cached ahead of training, LoRA, a frozen vision tower, resumable checkpoints.

The trainer sees the chat format of `model/chat.py`, so training and the rollout engine tokenize prompts identically.
Importing this module costs ~3 s (torch, transformers' Trainer, TRL), so only import it where training runs.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from trl import DPOConfig

from vlm_rl_assets.dpo.pair_dpo import PairDPOTrainer
from vlm_rl_assets.dpo.pair_dpo import reference_logps as pair_reference_logps
from vlm_rl_assets.dpo.settings import ONE_BETA_WHY, SORTED_LOSS_TYPES, DPOSettings
from vlm_rl_assets.model.chat import preference_example
from vlm_rl_assets.model.loading import DeviceMap, release_memory
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.model.trainer import StrictResume, lazy_dataset, train_and_save
from vlm_rl_assets.training.policy import policy_args, policy_trainer
from vlm_rl_assets.training.settings import TrainingSettings

DPO_WATCHED = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
)


@dataclass(frozen=True)
class PreferencePair:
    """One DPO pair: two answers to the same prompt, the first preferred, and the beta it trains with (its
    category's, from judged_pairs' `beta` column). The reference log-probs, when known (see `reference_logps`),
    spare training the reference model."""

    prompt_text: str
    images: tuple[Image.Image, ...]
    chosen: str
    rejected: str
    beta: float
    ref_chosen_logps: float | None = None
    ref_rejected_logps: float | None = None


def dpo_train(
    model_dir: str | Path,
    out_dir: str | Path,
    pairs: Sequence[PreferencePair],
    settings: TrainingSettings = TrainingSettings(),
    loss: DPOSettings = DPOSettings(),
    log: Callable[[str], None] | None = None,
    work_dir: str | Path | None = None,
) -> TrainResult:
    """DPO on preference pairs, each with its own beta; saves model + processor to out_dir (LoRA merged first).

    When every pair carries its reference log-probs, training holds only the policy; otherwise TRL reloads
    `model_dir` as a frozen reference and runs it every step (with LoRA: the model with its adapters off).
    With `work_dir`, Trainer checkpoints land there every `settings.save_steps` steps and a rerun on the same
    work_dir resumes from the latest complete one, so a killed run loses at most `save_steps` steps.
    Under `accelerate launch` every process runs this; only the main one saves.
    """
    if not pairs:
        raise ValueError("dpo_train needs at least one PreferencePair; got none")
    checkpoints = work_dir is not None
    trainer = dpo_trainer(model_dir, work_dir or out_dir, pairs, settings, loss, log, checkpoints=checkpoints)
    return train_and_save(trainer, trainer.processing_class, out_dir, DPO_WATCHED, work_dir, log)


def reference_logps(
    model_dir: str | Path, pairs: Sequence[PreferencePair], batch_size: int = 16
) -> list[tuple[float, float]]:
    """(chosen, rejected) log-probs of `model_dir` on each pair, as the reference of a DPO run from `model_dir`
    sees them: one no-grad pass, to be cached and passed back on `PreferencePair`. Its model is freed when it ends,
    GPU cache included: the training processes launched next need those cards."""
    if not pairs:
        return []
    plain = [dataclasses.replace(p, ref_chosen_logps=None, ref_rejected_logps=None) for p in pairs]
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's output_dir; nothing is saved there
        chosen, rejected = _reference_pass(model_dir, scratch, plain, batch_size)
    release_memory()
    return list(zip(chosen, rejected))


def _reference_pass(
    model_dir: str | Path, scratch: str, pairs: Sequence[PreferencePair], batch_size: int
) -> tuple[list[float], list[float]]:
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the Trainer runs it (cuda:0 where there is one)
    device_map = reference_device_map(device, torch.cuda.device_count())
    settings = TrainingSettings(batch_size=batch_size)
    trainer = dpo_trainer(model_dir, scratch, pairs, settings, cached_reference=True, device_map=device_map)
    return pair_reference_logps(trainer, trainer.train_dataset, batch_size)


def reference_device_map(device: str, gpus: int) -> str | None:
    """How the reference pass places its model: on CUDA with several GPUs visible, "auto" (accelerate's big-model
    dispatch spreads the layers over all of them, so a model larger than one card fits; each batch runs through the
    cards in turn, one busy at a time); else None, the whole model on the Trainer's one device."""
    return "auto" if device == "cuda" and gpus > 1 else None


def dpo_trainer(
    model_dir: str | Path,
    out_dir: str | Path,
    pairs: Sequence[PreferencePair],
    settings: TrainingSettings,
    loss: DPOSettings = DPOSettings(),
    log: Callable[[str], None] | None = None,
    cached_reference: bool | None = None,
    checkpoints: bool = False,
    device_map: DeviceMap | None = None,
) -> PairDPOTrainer:
    """The configured `PairDPOTrainer` on `pairs` with `loss` (not yet trained); cached_reference defaults to whether
    every pair carries its reference log-probs; with `checkpoints`, it saves resumable checkpoints into out_dir; a
    `device_map` (`reference_device_map`) places the model of a no-grad pass, never one that trains."""
    betas = sorted({p.beta for p in pairs})
    if SORTED_LOSS_TYPES & set(loss.loss_type) and len(betas) > 1:
        raise ValueError(
            f"{ONE_BETA_WHY}; these pairs carry betas {betas}. Give the categories they come from one beta "
            "(categories.<c>.beta, then rematerialize judged_pairs) or use another loss_type"
        )
    _refuse_text_only_when_sharded(pairs, settings)
    cached = [p.ref_chosen_logps is not None and p.ref_rejected_logps is not None for p in pairs]
    if cached_reference is None:
        if any(cached) and not all(cached):
            raise ValueError(
                f"{cached.count(False)} of {len(pairs)} pairs lack reference log-probs: compute them for all pairs "
                "with reference_logps, or for none"
            )
        cached_reference = all(cached)
    config = DPOConfig(
        **policy_args(settings, out_dir, settings.batch_size, checkpoints),
        loss_type=list(loss.loss_type),
        loss_weights=list(loss.loss_weights) if loss.loss_weights is not None else None,
    )

    def to_example(pair: PreferencePair) -> dict[str, Any]:
        example = preference_example(pair.prompt_text, pair.images, pair.chosen, pair.rejected)
        example["beta"] = pair.beta
        if cached_reference and pair.ref_chosen_logps is not None:
            example["ref_chosen_logps"], example["ref_rejected_logps"] = pair.ref_chosen_logps, pair.ref_rejected_logps
        return example

    dataset = lazy_dataset(pairs, to_example)
    return policy_trainer(
        _ResumablePairDPOTrainer,
        model_dir,
        settings,
        config,
        dataset,
        log,
        device_map=device_map,
        cached_reference=cached_reference,
    )


def _refuse_text_only_when_sharded(pairs: Sequence[PreferencePair], settings: TrainingSettings) -> None:
    """Under FSDP2 or ZeRO-3 a process whose batch has no image would skip the vision tower while the others gather
    its weights, and the run would hang (LLaMA-Factory #6233 feeds such batches a dummy image instead). The pipeline
    never makes such pairs (a dataset row without images is refused, every synthetic task draws one), so a text-only
    pair is refused here rather than padded."""
    text_only = sum(not pair.images for pair in pairs)
    if settings.sharding != "none" and text_only:
        raise ValueError(
            f"training.sharding: {settings.sharding} needs an image in every pair, and {text_only} of {len(pairs)} "
            "pairs have none: a process whose batch has no image would skip the vision tower while the others wait "
            "for it, hanging the run. Drop the text-only pairs, or train them with training.sharding: none"
        )


class _ResumablePairDPOTrainer(StrictResume, PairDPOTrainer):
    """PairDPOTrainer whose resume really loads the checkpoint's weights (see StrictResume)."""
