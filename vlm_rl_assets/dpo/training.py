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
from accelerate.utils import is_peft_model
from PIL import Image
from trl import DPOConfig

from vlm_rl_assets.dpo.pair_dpo import PairDPOTrainer
from vlm_rl_assets.dpo.pair_dpo import reference_logps as pair_reference_logps
from vlm_rl_assets.dpo.settings import ONE_BETA_WHY, SORTED_LOSS_TYPES, DPOSettings, LoRASettings
from vlm_rl_assets.model.chat import preference_example
from vlm_rl_assets.model.resume import checkpoint_step, latest_checkpoint
from vlm_rl_assets.model.tiny_model import load_model, load_processor
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.model.trainer import FlowCallback, common_args, lazy_dataset, train_and_save

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
    settings: DPOSettings = DPOSettings(),
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
    trainer = dpo_trainer(model_dir, work_dir or out_dir, pairs, settings, log, checkpoints=work_dir is not None)
    resume = latest_checkpoint(work_dir) if work_dir is not None else None
    if resume is not None and log is not None and trainer.args.should_save:
        log(f"resuming from step {checkpoint_step(resume)} ({resume}), not from step 0")
    return train_and_save(trainer, trainer.processing_class, out_dir, DPO_WATCHED, resume)


def reference_logps(
    model_dir: str | Path, pairs: Sequence[PreferencePair], batch_size: int = 16
) -> list[tuple[float, float]]:
    """(chosen, rejected) log-probs of `model_dir` on each pair, as the reference of a DPO run from `model_dir`
    sees them: one no-grad pass, to be cached and passed back on `PreferencePair`."""
    if not pairs:
        return []
    plain = [dataclasses.replace(p, ref_chosen_logps=None, ref_rejected_logps=None) for p in pairs]
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's output_dir; nothing is saved there
        trainer = dpo_trainer(model_dir, scratch, plain, DPOSettings(batch_size=batch_size), cached_reference=True)
        chosen, rejected = pair_reference_logps(trainer, trainer.train_dataset, batch_size)
    return list(zip(chosen, rejected))


def dpo_trainer(
    model_dir: str | Path,
    out_dir: str | Path,
    pairs: Sequence[PreferencePair],
    settings: DPOSettings,
    log: Callable[[str], None] | None = None,
    cached_reference: bool | None = None,
    checkpoints: bool = False,
) -> PairDPOTrainer:
    """The configured `PairDPOTrainer` on `pairs` (not yet trained); cached_reference defaults to whether every
    pair carries its reference log-probs; with `checkpoints`, it saves resumable checkpoints into out_dir."""
    betas = sorted({p.beta for p in pairs})
    if SORTED_LOSS_TYPES & set(settings.loss_type) and len(betas) > 1:
        raise ValueError(
            f"{ONE_BETA_WHY}; these pairs carry betas {betas}. Give the categories they come from one beta "
            "(categories.<c>.beta, then rematerialize judged_pairs) or use another loss_type"
        )
    cached = [p.ref_chosen_logps is not None and p.ref_rejected_logps is not None for p in pairs]
    if cached_reference is None:
        if any(cached) and not all(cached):
            raise ValueError(
                f"{cached.count(False)} of {len(pairs)} pairs lack reference log-probs: compute them for all pairs "
                "with reference_logps, or for none"
            )
        cached_reference = all(cached)
    processor = load_processor(model_dir)
    config = DPOConfig(
        **common_args(
            out_dir,
            settings.seed,
            settings.learning_rate,
            settings.batch_size,
            settings.log_every,
            save_steps=settings.save_steps if checkpoints else None,
        ),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        loss_type=list(settings.loss_type),
        loss_weights=list(settings.loss_weights) if settings.loss_weights is not None else None,
    )

    def to_example(pair: PreferencePair) -> dict[str, Any]:
        example = preference_example(pair.prompt_text, pair.images, pair.chosen, pair.rejected)
        example["beta"] = pair.beta
        if cached_reference and pair.ref_chosen_logps is not None:
            example["ref_chosen_logps"], example["ref_rejected_logps"] = pair.ref_chosen_logps, pair.ref_rejected_logps
        return example

    trainer = _ResumablePairDPOTrainer(
        model=load_model(model_dir),
        args=config,
        train_dataset=lazy_dataset(pairs, to_example),
        processing_class=processor,
        cached_reference=cached_reference,
        callbacks=[FlowCallback(processor, log)],
        peft_config=peft_config(settings.lora) if settings.lora is not None else None,
    )
    if settings.freeze_vision_tower:
        vision_tower(trainer.model).requires_grad_(False)  # after the adapters are added: theirs freeze too
    return trainer


class _ResumablePairDPOTrainer(PairDPOTrainer):
    """PairDPOTrainer whose resume really loads the checkpoint's weights.

    transformers 5.17 resumes a full model with `load_state_dict(strict=False)` on the checkpoint's tensors, but
    `save_pretrained` wrote Qwen2-VL's weights under their legacy names: nothing matches, and the run would go on
    silently from the base weights. Reading the checkpoint with `from_pretrained` maps the names; the copy is strict.
    LoRA checkpoints hold only adapters, which peft loads by module name (the inherited path).
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if is_peft_model(self.model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        (model or self.model).load_state_dict(load_model(resume_from_checkpoint).state_dict())


def peft_config(lora: LoRASettings) -> Any:
    from peft import LoraConfig  # imported here: only LoRA runs pay for it

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)


def vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    """The image encoder of a VLM (under its LoRA wrapper, if any), found by transformers' own lookup."""
    base = model.get_base_model() if is_peft_model(model) else model
    tower = base.get_encoder(modality="image")
    if tower is base:
        raise ValueError(
            f"freeze_vision_tower: {type(base).__name__} has no vision tower transformers can find "
            "(visual, vision_tower, vision_model, ...); set training.freeze_vision_tower: false"
        )
    return tower


