"""What SFT (the embedded base), DPO and GRPO share on top of transformers' Trainer: the arguments that work on CPU and
GPU, lazily built image datasets, progress lines and early stopping, resuming from the newest complete checkpoint,
training and saving a plain `save_pretrained` folder.
Importing this module costs ~3 s (torch, transformers' Trainer, datasets), so only import it where training runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
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

from vlm_rl_assets.model.gathered import save_gathered
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.model.resume import checkpoint_step, latest_checkpoint
from vlm_rl_assets.model.train_result import METRICS_FILE, TrainResult

StopCheck = Callable[[PreTrainedModel, ProcessorMixin, int], bool]  # (model, processor, step): end training?
_Row = TypeVar("_Row")


def common_args(
    out_dir: str | Path,
    seed: int,
    learning_rate: float,
    batch_size: int,
    log_every: int,
    save_steps: int | None = None,
    gradient_checkpointing: bool = False,
) -> dict[str, Any]:
    """TrainingArguments shared by SFT and DPO: fp32 on CPU (TRL's bf16 default raises there), checkpoints every
    `save_steps` steps (the last two kept) or none. `batch_size` is per optimizer step, split over the processes
    `accelerate launch` started (WORLD_SIZE). bf16 mixed precision only where the launch config asks for it
    (ACCELERATE_MIXED_PRECISION: a sharded GPU run of a bfloat16 checkpoint); DeepSpeed refuses a Trainer whose
    bf16 disagrees with its own."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % processes:
        raise ValueError(
            f"batch size {batch_size} does not split over {processes} processes: use a multiple of {processes}"
        )
    checkpoints = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 2} if save_steps else {}
    return {
        "output_dir": str(out_dir),
        "seed": seed,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size // processes,
        "bf16": os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16",
        "gradient_checkpointing": gradient_checkpointing,  # TRL turns it on by default; a tiny model only slows down
        "remove_unused_columns": False,  # the dataset's only real column is the index the transform reads
        "save_strategy": "no",
        **checkpoints,
        "logging_steps": log_every,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": False,  # no accelerator on the CPU path; pinning only warns
        "include_num_input_tokens_seen": "non_padding",  # the tokens trained, a cost the run reports (TrainResult)
    }


def lazy_dataset(rows: Sequence[_Row], to_example: Callable[[_Row], dict[str, Any]]) -> Dataset:
    """An index-only table whose transform builds messages and PIL images per fetch: images never go through Arrow
    (which would also pad the message structs with null fields)."""

    def transform(batch: dict[str, list[int]]) -> dict[str, list[Any]]:
        built = [to_example(rows[i]) for i in batch["index"]]
        return {key: [example[key] for example in built] for key in built[0]}

    return Dataset.from_dict({"index": list(range(len(rows)))}).with_transform(transform)


class FlowCallback(TrainerCallback):
    """Runs the caller's early-stop check every `eval_every` steps and on the last step, logs the last step (so `final` is current) and
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

    def on_log(
        self, args, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any
    ) -> None:
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
        last = state.global_step >= state.max_steps
        if self.stop_when is not None and (state.global_step % self.eval_every == 0 or last):
            model.eval()
            with torch.no_grad():
                control.should_training_stop |= bool(self.stop_when(model, self.processor, state.global_step))
            model.train()
        if control.should_training_stop or last:
            control.should_log = True
        return control


class StrictResume:
    """Mixin for a Trainer class (first among its bases) whose resume really loads the checkpoint's weights.

    transformers 5.17 resumes a full model with `load_state_dict(strict=False)` on the checkpoint's tensors, but
    `save_pretrained` wrote Qwen2-VL's weights under their legacy names: nothing matches, and the run would go on
    silently from the base weights. Reading the checkpoint with `from_pretrained` maps the names; the copy is strict.
    LoRA checkpoints hold only adapters, which peft loads by module name (the inherited path). So does an FSDP
    run's: its checkpoint's pytorch_model_fsdp.bin holds the module's own names, which accelerate loads into the
    sharded weights (ZeRO-3 resumes from global_step<N>/ through DeepSpeed and never calls this).
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if is_peft_model(self.model) or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        (model or self.model).load_state_dict(load_model(resume_from_checkpoint).state_dict())


def train_and_save(
    trainer: Trainer,
    processor: ProcessorMixin,
    out_dir: str | Path,
    watched: Sequence[str],
    work_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, then on the main process save a plain `save_pretrained` folder: LoRA adapters merged into the weights,
    a sharded run's weights gathered whole, so any loader (vLLM too) reads it. With `work_dir` (where the trainer
    saves its checkpoints), a rerun resumes from the newest complete checkpoint there, saying so in `log`; load it
    through a `StrictResume` trainer."""
    resume = latest_checkpoint(work_dir) if work_dir is not None else None
    if resume is not None and log is not None and trainer.args.should_save:
        log(f"resuming from step {checkpoint_step(resume)} ({resume}), not from step 0")
    trainer.remove_callback(PrinterCallback)  # progress goes through FlowCallback's `log`
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    state = trainer.state
    final = {key: entry[key] for entry in state.log_history for key in watched if key in entry}
    resumed_from = checkpoint_step(resume) if resume is not None else 0
    result = TrainResult(
        steps=state.global_step,
        history=state.log_history,
        final=final,
        resumed_from=resumed_from,
        input_tokens=state.num_input_tokens_seen,
        examples=round((state.epoch or 0.0) * len(trainer.train_dataset)),
    )
    _save_model(trainer, out_dir)
    if trainer.args.should_save:
        processor.save_pretrained(out_dir)
        (Path(out_dir) / METRICS_FILE).write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return result


def _save_model(trainer: Trainer, out_dir: str | Path) -> None:
    """The trained model as a plain `save_pretrained` folder with LoRA adapters merged, written by the main process;
    a sharded run's weights are gathered first, in every process (`model/gathered.py`)."""
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        weights = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.args.should_save:  # the base is the folder the model was loaded from, as TRL's reference reads it
            lora = model.peft_config["default"] if is_peft_model(model) else None
            save_gathered(weights, model.config._name_or_path, out_dir, lora)
        return
    if trainer.args.should_save:
        model = trainer.model.merge_and_unload() if is_peft_model(trainer.model) else trainer.model
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
