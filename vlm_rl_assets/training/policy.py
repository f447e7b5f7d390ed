"""The policy a DPO or GRPO run trains, set up one way for both: the base model inside the algorithm's TRL trainer,
the arguments both take from `TrainingSettings`, LoRA adapters and a frozen vision tower as the settings ask, progress
through `FlowCallback`. Importing this module costs ~3 s (torch, transformers' Trainer), so only import it where
training runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from vlm_rl_assets.model.loading import DeviceMap, load_model, load_processor
from vlm_rl_assets.model.trainer import FlowCallback, common_args
from vlm_rl_assets.training.settings import LoRASettings, TrainingSettings

_Trainer = TypeVar("_Trainer", bound=Trainer)


def policy_args(settings: TrainingSettings, out_dir: str | Path, batch_size: int, checkpoints: bool) -> dict[str, Any]:
    """The TrainingArguments DPO and GRPO take from `settings`, `batch_size` examples per optimizer step; with
    `checkpoints`, resumable checkpoints into out_dir every `save_steps` steps."""
    save_steps = settings.save_steps if checkpoints else None
    return {
        **common_args(
            out_dir,
            settings.seed,
            settings.learning_rate,
            batch_size,
            settings.log_every,
            save_steps,
            settings.gradient_checkpointing,
        ),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
    }


def policy_trainer(
    trainer_class: type[_Trainer],
    model_dir: str | Path,
    settings: TrainingSettings,
    args: TrainingArguments,
    dataset: Dataset,
    log: Callable[[str], None] | None = None,
    device_map: DeviceMap | None = None,
    **algorithm: Any,
) -> _Trainer:
    """`trainer_class` (not yet trained) on the model in `model_dir` with its processor, LoRA adapters and a frozen
    vision tower as `settings` ask; `algorithm` holds the trainer's own arguments (TRL's reward functions, ...).
    A `device_map` places the model (`load_model`), and the Trainer leaves it there: only for no-grad passes, never
    for training, which shards through `accelerate launch` instead."""
    processor = load_processor(model_dir)
    trainer = trainer_class(
        model=load_model(model_dir, device_map=device_map),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[FlowCallback(processor, log)],
        peft_config=peft_config(settings.lora) if settings.lora is not None else None,
        **algorithm,
    )
    if settings.freeze_vision_tower:
        vision_tower(trainer.model).requires_grad_(False)  # after the adapters are added: theirs freeze too
    return trainer


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
