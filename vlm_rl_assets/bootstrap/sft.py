"""Supervised fine-tuning of the VLM through TRL's SFTTrainer: how the embedded base model learns its tasks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from trl import SFTConfig, SFTTrainer

from vlm_rl_assets.bootstrap.settings import SFTSettings
from vlm_rl_assets.dpo.pair_dpo import score_completions_only
from vlm_rl_assets.model.chat import assistant_message, user_message
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.model.trainer import FlowCallback, StopCheck, common_args, lazy_dataset, train_and_save

SFT_WATCHED = ("loss", "mean_token_accuracy")


@dataclass(frozen=True)
class TrainExample:
    """One SFT example: the images and question of a prompt, and the answer to learn."""

    prompt_text: str
    images: tuple[Image.Image, ...]
    answer: str


def sft_train(
    model_dir: str | Path,
    out_dir: str | Path,
    examples: Sequence[TrainExample],
    settings: SFTSettings = SFTSettings(),
    stop_when: StopCheck | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Supervised fine-tuning on prompt/answer pairs, loss on the answer only; saves model + processor to out_dir.

    `stop_when(model, processor, step)` runs every `settings.check_grid` steps and on the last one, and ends training
    when it returns True: a tiny VLM's held-out accuracy jumps once it starts learning, so a fixed step count wastes
    time or stops short.
    """
    if not examples:
        raise ValueError("sft_train needs at least one TrainExample; got none")
    processor = load_processor(model_dir)
    config = SFTConfig(
        **common_args(out_dir, settings.seed, settings.learning_rate, settings.batch_size, settings.logging_steps),
        max_steps=settings.max_steps,
        lr_scheduler_type="constant",
        warmup_steps=0,
        completion_only_loss=True,
    )
    dataset = lazy_dataset(
        examples,
        lambda ex: {
            "prompt": [user_message(ex.prompt_text, len(ex.images))],
            "completion": [assistant_message(ex.answer)],
            "images": list(ex.images),
        },
    )
    trainer = SFTTrainer(
        model=load_model(model_dir),
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[FlowCallback(processor, log, stop_when, settings.check_grid)],
    )
    with score_completions_only():  # the loss reads only the answers' logits: the LM head scores only those
        return train_and_save(trainer, processor, out_dir, SFT_WATCHED).count_cost()
