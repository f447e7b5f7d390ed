"""GRPO for the VLM through TRL's GRPOTrainer, as a plain function (no Dagster): the policy samples a group of
completions per prompt with `generate` (no vLLM, so it runs on CPU too), the reward functions score them, and the
policy moves towards each group's better completions, LoRA and a frozen vision tower as for DPO.

The prompts are in the chat format of `model/chat.py` (the images as placeholders, TRL fills them in), so GRPO samples
from the prompts exactly as the rollout engine and DPO tokenize them. Importing this module costs ~3 s (torch,
transformers' Trainer, TRL), so only import it where training runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from trl import GRPOConfig, GRPOTrainer

from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.dpo.training import peft_config, vision_tower
from vlm_rl_assets.model.chat import user_message
from vlm_rl_assets.model.tiny_model import load_model, load_processor
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.model.trainer import FlowCallback, common_args, lazy_dataset, train_and_save

GRPO_WATCHED = (
    "loss",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "completions/mean_length",
    "completions/clipped_ratio",
    "clip_ratio/region_mean",
)


@dataclass(frozen=True)
class RLPrompt:
    """A train prompt GRPO samples from; the reward functions find its ground truth by `prompt_id`."""

    prompt_id: str
    prompt_text: str
    images: tuple[Image.Image, ...]


def grpo_train(
    model_dir: str | Path,
    out_dir: str | Path,
    prompts: Sequence[RLPrompt],
    rewards: Sequence[Callable[..., list[float | None]]],
    settings: DPOSettings,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """GRPO of `model_dir` on `prompts` with the summed `rewards` (None: not scored); saves model + processor to
    out_dir (LoRA merged first). `settings.grpo` holds what is GRPO's own; learning rate, epochs or max_steps, seed,
    LoRA and the vision tower are `settings`' as for DPO."""
    if not prompts:
        raise ValueError("grpo_train needs at least one RLPrompt; got none")
    trainer = grpo_trainer(model_dir, out_dir, prompts, rewards, settings, log)
    return train_and_save(trainer, trainer.processing_class, out_dir, GRPO_WATCHED).count_cost()


def grpo_trainer(
    model_dir: str | Path,
    out_dir: str | Path,
    prompts: Sequence[RLPrompt],
    rewards: Sequence[Callable[..., list[float | None]]],
    settings: DPOSettings,
    log: Callable[[str], None] | None = None,
) -> GRPOTrainer:
    """The configured GRPOTrainer (not yet trained)."""
    grpo = settings.grpo
    processor = load_processor(model_dir)
    completions_per_step = grpo.prompts_per_step * grpo.num_generations
    config = GRPOConfig(
        **common_args(out_dir, settings.seed, settings.learning_rate, completions_per_step, settings.log_every),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        beta=grpo.beta,
        loss_type=grpo.loss_type,
        scale_rewards=grpo.scale_rewards,
        epsilon=grpo.epsilon,
    )

    def to_example(prompt: RLPrompt) -> dict[str, Any]:
        message = user_message(prompt.prompt_text, len(prompt.images))
        return {"prompt": [message], "images": list(prompt.images), "prompt_id": prompt.prompt_id}

    trainer = GRPOTrainer(
        model=load_model(model_dir),
        reward_funcs=list(rewards),
        args=config,
        train_dataset=lazy_dataset(prompts, to_example),
        processing_class=processor,
        callbacks=[FlowCallback(processor, log)],
        peft_config=peft_config(settings.lora) if settings.lora is not None else None,
    )
    if settings.freeze_vision_tower:
        vision_tower(trainer.model).requires_grad_(False)  # after the adapters are added: theirs freeze too
    return trainer
