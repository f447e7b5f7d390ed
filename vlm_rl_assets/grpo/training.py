"""GRPO for the VLM through TRL's GRPOTrainer, as a plain function (no Dagster): the policy samples a group of
completions per prompt with `generate` (no vLLM, so it runs on CPU too), the reward functions score them, and the
policy moves towards each group's better completions, LoRA, a frozen vision tower and resumable checkpoints as for DPO.

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
from torch.utils.data import Dataset, Sampler
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.model.chat import user_message
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.model.trainer import StrictResume, lazy_dataset, train_and_save
from vlm_rl_assets.training.policy import policy_args, policy_trainer
from vlm_rl_assets.training.run_folder import png_file, run_folder
from vlm_rl_assets.training.settings import TrainingSettings

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
    settings: TrainingSettings,
    grpo: GRPOSettings,
    log: Callable[[str], None] | None = None,
    work_dir: str | Path | None = None,
) -> TrainResult:
    """GRPO of `model_dir` on `prompts` with the summed `rewards` (None: not scored); saves model + processor to
    out_dir (LoRA merged first). `grpo` holds what is GRPO's own; learning rate, epochs or max_steps, seed,
    LoRA and the vision tower are `settings`' as for DPO. With `work_dir` (see `grpo_work_folder`), checkpoints
    land there every `settings.save_steps` steps, the sampling RNG state with them, and a rerun resumes from the
    latest complete one."""
    if not prompts:
        raise ValueError("grpo_train needs at least one RLPrompt; got none")
    trainer = grpo_trainer(
        model_dir, work_dir or out_dir, prompts, rewards, settings, grpo, log, checkpoints=work_dir is not None
    )
    return train_and_save(trainer, trainer.processing_class, out_dir, GRPO_WATCHED, work_dir, log).count_cost()


def grpo_work_folder(
    root: str | Path,
    model_fingerprint: str,
    prompts: Sequence[RLPrompt],
    reward_keys: Sequence[Any],
    settings: TrainingSettings,
    grpo: GRPOSettings,
) -> Path:
    """`<root>/<run key>`, the work folder of a GRPO run, keyed as DPO's (`training/run_folder.py`) by what determines
    its weights: the base model, the prompts with their images, what decides each reward (`reward_keys`, JSON), the
    settings and GRPO's own; so a rerun of the same run resumes and a changed one starts afresh."""
    rows = [
        {"prompt_id": p.prompt_id, "prompt_text": p.prompt_text, "images": [png_file(image)[0] for image in p.images]}
        for p in prompts
    ]
    return run_folder(root, model_fingerprint, {"prompts": rows, "rewards": list(reward_keys)}, settings, grpo)


def grpo_trainer(
    model_dir: str | Path,
    out_dir: str | Path,
    prompts: Sequence[RLPrompt],
    rewards: Sequence[Callable[..., list[float | None]]],
    settings: TrainingSettings,
    grpo: GRPOSettings,
    log: Callable[[str], None] | None = None,
    checkpoints: bool = False,
) -> GRPOTrainer:
    """The configured GRPOTrainer (not yet trained); with `checkpoints`, it saves resumable checkpoints into out_dir."""
    config = GRPOConfig(
        **{
            **policy_args(settings, out_dir, grpo.prompts_per_step * grpo.num_generations, checkpoints),
            # GRPOTrainer counts prompt and completion tokens into the same state itself; the Trainer's own count
            # finds no input_ids in GRPO's batches and warned once per step
            "include_num_input_tokens_seen": "no",
        },
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

    dataset = lazy_dataset(prompts, to_example)
    trainer = policy_trainer(
        _ResumableGRPOTrainer, model_dir, settings, config, dataset, log, reward_funcs=list(rewards)
    )
    # TRL left-pads the prompt ids but takes the per-token image markers (Qwen's mm_token_type_ids, Gemma's
    # token_type_ids) from the processor, padded on the tokenizer's side; right (transformers' default) shifts a
    # shorter prompt's markers off its image: wrong M-RoPE positions, or get_rope_index's shape mismatch. TRL's own
    # processor is left-padded, a given one is the caller's to set (huggingface/trl#5785). save_pretrained keeps
    # the loaded side, so the saved processor is the base's.
    trainer.processing_class.tokenizer.padding_side = "left"
    return trainer


class _ResumableGRPOTrainer(StrictResume, GRPOTrainer):
    """GRPOTrainer whose resume goes on as the uninterrupted run would: it loads the checkpoint's weights (see
    StrictResume), the Trainer restores the sampling RNG state saved with them, and each epoch's prompt order is
    drawn from (seed, epoch) (`_EpochShuffled`)."""

    def _get_train_sampler(self, dataset: Dataset | None = None) -> Sampler:
        return _EpochShuffled(super()._get_train_sampler(dataset))


class _EpochShuffled(Sampler):
    """TRL's RepeatSampler shuffling each epoch from `seed + epoch` (the Trainer calls `set_epoch` at each epoch's
    start). Its own generator draws every epoch's order after the previous ones, so the sampler a resumed run builds
    afresh would replay epoch 0's order in a later epoch; epoch 0's order is unchanged."""

    def __init__(self, sampler: RepeatSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        if self.sampler.shuffle:
            self.sampler.generator.manual_seed(self.sampler.seed + epoch)

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
