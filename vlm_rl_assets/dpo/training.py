"""SFT bootstrap and DPO for the VLM through TRL, as plain functions (no Dagster).

Both trainers see the chat format of `chat.py`, so training and the rollout engine tokenize prompts identically.
Importing this module costs ~3 s (torch, transformers' Trainer, TRL), so only import it where training runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from PIL import Image
from transformers import (
    PreTrainedModel,
    PrinterCallback,
    ProcessorMixin,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from trl import DPOConfig, SFTConfig, SFTTrainer

from vlm_rl_assets.model.chat import assistant_message, preference_example, user_message
from vlm_rl_assets.dpo.pair_dpo import PairDPOTrainer
from vlm_rl_assets.dpo.pair_dpo import reference_logps as pair_reference_logps
from vlm_rl_assets.model.resume import checkpoint_step, latest_checkpoint
from vlm_rl_assets.model.tiny_model import load_model, load_processor

SFT_WATCHED = ("loss", "mean_token_accuracy")
DPO_WATCHED = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
)

METRICS_FILE = "training_metrics.json"  # beside the weights: what produced this checkpoint

StopCheck = Callable[[PreTrainedModel, ProcessorMixin], bool]
_Row = TypeVar("_Row")


@dataclass(frozen=True)
class TrainExample:
    """One SFT example: the images and question of a prompt, and the answer to learn."""

    prompt_text: str
    images: tuple[Image.Image, ...]
    answer: str


@dataclass(frozen=True)
class PreferencePair:
    """One DPO pair: two answers to the same prompt, the first preferred.

    `beta` overrides `DPOSettings.beta` for this pair (a category's own beta inside a mixture). The reference
    log-probs, when known (see `reference_logps`), spare training the reference model.
    """

    prompt_text: str
    images: tuple[Image.Image, ...]
    chosen: str
    rejected: str
    beta: float | None = None
    ref_chosen_logps: float | None = None
    ref_rejected_logps: float | None = None


@dataclass(frozen=True)
class SFTSettings:
    max_steps: int = 400  # upper bound; `stop_when` usually ends training earlier
    batch_size: int = 32  # examples per optimizer step
    learning_rate: float = 2e-3  # constant, no warmup: what made the tiny VLM learn on CPU (STACK.md)
    seed: int = 0  # seeds the data order (the model is loaded, not initialised)
    eval_every: int = 25  # steps between held-out checks (early stop)
    log_every: int = 5  # steps between log entries; the last step is always logged


@dataclass(frozen=True)
class LoRASettings:
    """Low-rank adapters on `target_modules` (a list of names, or "all-linear"); merged before saving."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = "all-linear"


@dataclass(frozen=True)
class DPOSettings:
    beta: float = 0.1  # strength of the pull towards the reference (the starting model)
    learning_rate: float = 2e-5  # lr >= 1e-4 at beta 0.1 collapsed the answer format (STACK.md)
    batch_size: int = 16  # pairs per optimizer step
    epochs: int = 2  # passes over the pairs, unless max_steps is set
    max_steps: int = -1  # > 0 overrides epochs
    seed: int = 0  # seeds the data order
    loss_type: tuple[str, ...] = ("sigmoid",)  # TRL loss names, summed; ("sigmoid", "bco_pair", "sft") is MPO
    loss_weights: tuple[float, ...] | None = None  # one per loss type; None weighs each 1.0
    log_every: int = 5  # steps between log entries; the last step is always logged
    lora: LoRASettings | None = None  # None: every weight trains
    freeze_vision_tower: bool = False  # the vision encoder (and its projector) keeps the base model's weights
    save_steps: int = 50  # steps between resumable Trainer checkpoints (only when dpo_train has a work_dir)


@dataclass
class TrainResult:
    steps: int  # optimizer steps taken
    history: list[dict[str, float]]  # TRL's log_history (the last entry is the run summary, train_runtime etc.)
    final: dict[str, float]  # last logged value of each watched metric
    resumed_from: int = 0  # the checkpoint step this run resumed from; 0: it started fresh


def read_result(out_dir: str | Path) -> TrainResult:
    """The TrainResult a finished run wrote beside its weights (how a launched run reports back)."""
    return TrainResult(**json.loads((Path(out_dir) / METRICS_FILE).read_text()))


def sft_train(
    model_dir: str | Path,
    out_dir: str | Path,
    examples: Sequence[TrainExample],
    settings: SFTSettings = SFTSettings(),
    stop_when: StopCheck | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Supervised fine-tuning on prompt/answer pairs, loss on the answer only; saves model + processor to out_dir.

    `stop_when(model, processor)` runs every `settings.eval_every` steps and ends training when it returns True:
    a tiny VLM's held-out accuracy jumps once it starts learning, so a fixed step count wastes time or stops short.
    """
    if not examples:
        raise ValueError("sft_train needs at least one TrainExample; got none")
    processor = load_processor(model_dir)
    config = SFTConfig(
        **_common_args(out_dir, settings.seed, settings.learning_rate, settings.batch_size, settings.log_every),
        max_steps=settings.max_steps,
        lr_scheduler_type="constant",
        warmup_steps=0,
        completion_only_loss=True,
    )
    dataset = _lazy_dataset(
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
        callbacks=[_FlowCallback(processor, log, stop_when, settings.eval_every)],
    )
    return _train_and_save(trainer, processor, out_dir, SFT_WATCHED)


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
    return _train_and_save(trainer, trainer.processing_class, out_dir, DPO_WATCHED, resume)


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
        **_common_args(
            out_dir,
            settings.seed,
            settings.learning_rate,
            settings.batch_size,
            settings.log_every,
            save_steps=settings.save_steps if checkpoints else None,
        ),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        beta=settings.beta,
        loss_type=list(settings.loss_type),
        loss_weights=list(settings.loss_weights) if settings.loss_weights is not None else None,
    )

    def to_example(pair: PreferencePair) -> dict[str, Any]:
        example = preference_example(pair.prompt_text, pair.images, pair.chosen, pair.rejected)
        example["beta"] = settings.beta if pair.beta is None else pair.beta
        if cached_reference and pair.ref_chosen_logps is not None:
            example["ref_chosen_logps"], example["ref_rejected_logps"] = pair.ref_chosen_logps, pair.ref_rejected_logps
        return example

    trainer = _ResumablePairDPOTrainer(
        model=load_model(model_dir),
        args=config,
        train_dataset=_lazy_dataset(pairs, to_example),
        processing_class=processor,
        cached_reference=cached_reference,
        callbacks=[_FlowCallback(processor, log)],
        peft_config=_peft_config(settings.lora) if settings.lora is not None else None,
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


def _peft_config(lora: LoRASettings) -> Any:
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


def _common_args(
    out_dir: str | Path, seed: int, learning_rate: float, batch_size: int, log_every: int, save_steps: int | None = None
) -> dict[str, Any]:
    """TrainingArguments shared by SFT and DPO: fp32 on CPU (TRL's bf16 default raises there), checkpoints every
    `save_steps` steps (the last two kept) or none. `batch_size` is per optimizer step, split over the processes
    `accelerate launch` started (WORLD_SIZE)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % processes:
        raise ValueError(f"batch size {batch_size} does not split over {processes} processes: use a multiple of {processes}")
    checkpoints = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 2} if save_steps else {}
    return {
        "output_dir": str(out_dir),
        "seed": seed,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size // processes,
        "bf16": False,
        "gradient_checkpointing": False,  # TRL turns it on by default; it only slows a tiny model down
        "remove_unused_columns": False,  # the dataset's only real column is the index the transform reads
        "save_strategy": "no",
        **checkpoints,
        "logging_steps": log_every,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": False,  # no accelerator on the CPU path; pinning only warns
    }


def _lazy_dataset(rows: Sequence[_Row], to_example: Callable[[_Row], dict[str, Any]]) -> Dataset:
    """An index-only table whose transform builds messages and PIL images per fetch: images never go through Arrow
    (which would also pad the message structs with null fields)."""

    def transform(batch: dict[str, list[int]]) -> dict[str, list[Any]]:
        built = [to_example(rows[i]) for i in batch["index"]]
        return {key: [example[key] for example in built] for key in built[0]}

    return Dataset.from_dict({"index": list(range(len(rows)))}).with_transform(transform)


class _FlowCallback(TrainerCallback):
    """Runs the caller's early-stop check every `eval_every` steps, logs the last step (so `final` is current) and
    sends each log entry to the caller's `log` as one line instead of the Trainer's printed dicts."""

    def __init__(
        self,
        processor: ProcessorMixin,
        log: Callable[[str], None] | None = None,
        stop_when: StopCheck | None = None,
        eval_every: int = 0,
    ) -> None:
        self.processor, self.log, self.stop_when, self.eval_every = processor, log, stop_when, eval_every

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.start, self.start_step = time.monotonic(), state.global_step  # a resumed run starts past 0

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        if self.log is not None and logs and state.is_world_process_zero:
            values = ", ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, float | int))
            rate = (state.global_step - self.start_step) / max(time.monotonic() - self.start, 1e-9)
            eta = (state.max_steps - state.global_step) / rate if rate > 0 else float("nan")
            self.log(f"step {state.global_step}/{state.max_steps} ({rate:.3g} steps/s, ETA {eta:.0f}s): {values}")

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: PreTrainedModel | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if self.stop_when is not None and state.global_step % self.eval_every == 0:
            model.eval()
            with torch.no_grad():
                control.should_training_stop |= bool(self.stop_when(model, self.processor))
            model.train()
        if control.should_training_stop or state.global_step >= state.max_steps:
            control.should_log = True
        return control


def _train_and_save(
    trainer: Trainer,
    processor: ProcessorMixin,
    out_dir: str | Path,
    watched: Sequence[str],
    resume: Path | None = None,
) -> TrainResult:
    """Train (from `resume`, a Trainer checkpoint, if given), then on the main process save a plain
    `save_pretrained` folder: LoRA adapters merged into the weights, so any loader (vLLM too) reads it."""
    trainer.remove_callback(PrinterCallback)  # progress goes through _FlowCallback's `log`
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    history = trainer.state.log_history
    final = {key: entry[key] for entry in history for key in watched if key in entry}
    resumed_from = checkpoint_step(resume) if resume is not None else 0
    result = TrainResult(steps=trainer.state.global_step, history=history, final=final, resumed_from=resumed_from)
    if trainer.args.should_save:
        model = trainer.model.merge_and_unload() if is_peft_model(trainer.model) else trainer.model
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (Path(out_dir) / METRICS_FILE).write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return result
