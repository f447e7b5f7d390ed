"""TRL's DPOTrainer with a beta per pair and, optionally, reference log-probs cached ahead of training.

TRL 1.16 takes one beta per run and refuses `precompute_ref_log_probs` for image datasets, so it holds a full
reference copy and runs its forward every step. `PairDPOTrainer` keeps TRL's loss code (every loss type, the
metrics) and only feeds it a per-pair beta tensor and, when the dataset carries them, the cached reference
log-probs: then no reference model is built at all. It also encodes each image once per step, where TRL's
collator hands the vision tower every image twice (once for the chosen row, once for the rejected), and tokenizes
each example once before training instead of every step (`dpo_collator.py`); both give TRL's exact numbers. The
language model runs each pair's shared prompt once, not once per answer (`shared_prefix.py`: TRL's numbers up to float
summation order). On CPU its LM head scores only the completion tokens, as TRL's does on GPUs, instead of every prompt
and padding position.

Under FSDP2 or ZeRO-3 every process must run the same modules the same number of times each step, since each call
gathers the module's weights from all of them: so the shared-prompt pass, taken or not by what a batch holds, is off
there (the vision tower still runs once per batch everywhere: `dpo_trainer` refuses pairs without an image), and the
cached reference's stand-in is kept from TRL's sharding of a given reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import send_to_device
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, ProcessorMixin
from trl import DPOConfig, DPOTrainer
from trl.trainer import dpo_trainer as trl_dpo
from trl.trainer import utils as trl_utils
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from vlm_rl_assets.dpo.collator import PretokenizedCollator
from vlm_rl_assets.dpo.shared_prefix import repeated_half, replaced_forward, share_prefix

PAIR_FIELDS = ("beta", "ref_chosen_logps", "ref_rejected_logps")  # per-example numbers carried beside TRL's fields


@dataclass
class PairCollator:
    """TRL's vision collator plus the per-pair numbers in PAIR_FIELDS as float tensors (TRL's would drop them)."""

    inner: PretokenizedCollator | DataCollatorForVisionPreference

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        extra = {key: [example.pop(key) for example in examples] for key in PAIR_FIELDS if key in examples[0]}
        batch = self.inner(examples)
        for key, values in extra.items():
            batch[key] = torch.tensor(values, dtype=torch.float32)
        return batch


class _CachedReference(torch.nn.Module):
    """Stands in for the reference model while TRL's constructor runs, so it does not copy the policy; dropped
    right after. It has no weights and refuses to run."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("reference log-probs are cached: the reference model must not run")


class PairDPOTrainer(DPOTrainer):
    """DPOTrainer whose examples carry `beta` (and optionally `ref_chosen_logps`/`ref_rejected_logps`).

    With `cached_reference=True` every example must carry both reference log-probs; training then holds one model.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        args: DPOConfig,
        train_dataset: Dataset,
        processing_class: ProcessorMixin,
        cached_reference: bool = False,
        **kwargs: Any,
    ) -> None:
        reference = _CachedReference(model.config) if cached_reference else None
        with _left_unsharded(reference):
            super().__init__(
                model=model,
                ref_model=reference,
                args=args,
                train_dataset=train_dataset,
                processing_class=processing_class,
                **kwargs,
            )
        inner = self.data_collator
        if isinstance(inner, DataCollatorForVisionPreference) and inner.pad_to_multiple_of is None:
            inner = PretokenizedCollator(inner)
        self.data_collator = PairCollator(inner)
        if cached_reference:
            self.ref_model = None
            self.precompute_ref_logps = True  # TRL's loss then reads the reference log-probs from the batch
        self._run_beta = self.beta

    def get_train_dataloader(self) -> DataLoader:
        """Training's loader, after tokenizing every training example once (not done for other passes over the data,
        such as `reference_logps`, which read each example once anyway)."""
        if isinstance(self.data_collator.inner, PretokenizedCollator):
            self.data_collator.inner.pretokenize(self.train_dataset, self.args.per_device_train_batch_size)
        return super().get_train_dataloader()

    def _compute_loss(self, model: PreTrainedModel, inputs: dict[str, Any], return_outputs: bool) -> Any:
        """TRL's loss with `self.beta` set to the batch's per-pair betas: every loss type multiplies by it
        elementwise, so equal betas give exactly TRL's loss (aot and aot_unpaired, which sort the batch, get only
        equal betas: `training.dpo_trainer` refuses pairs with different ones)."""
        betas = inputs.pop("beta", None)
        if betas is not None:
            self.beta = betas.to(self.accelerator.device)
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled  # see the module docstring
        try:
            with _one_pass_per_pair(self.accelerator.unwrap_model(model), share_prompt=not sharded):
                return super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.beta = self._run_beta


@contextlib.contextmanager
def _left_unsharded(stub: _CachedReference | None) -> Iterator[None]:
    """While TRL's constructor runs, its `prepare_fsdp` / `prepare_deepspeed` (which shard a given reference model
    under FSDP / DeepSpeed) hand the cached reference's stand-in back untouched: it has no weights to shard, and
    DeepSpeed would start an engine for it. Any other model goes through them as before."""
    if stub is None:
        yield
        return
    originals = {name: getattr(trl_dpo, name) for name in ("prepare_fsdp", "prepare_deepspeed")}

    def skipping(prepare: Any) -> Any:
        return lambda model, accelerator: model if model is stub else prepare(model, accelerator)

    for name, prepare in originals.items():
        setattr(trl_dpo, name, skipping(prepare))
    try:
        yield
    finally:
        for name, prepare in originals.items():
            setattr(trl_dpo, name, prepare)


@contextlib.contextmanager
def _one_pass_per_pair(model: PreTrainedModel, share_prompt: bool = True) -> Iterator[None]:
    """The model's forward over a [chosen rows, rejected rows] batch with each pair's images encoded once, its shared
    prompt run once (with `share_prompt`), and the LM head on the completions only."""
    with share_prefix(model) if share_prompt else contextlib.nullcontext():
        with encode_each_image_once(model), score_completions_only():
            yield


@contextlib.contextmanager
def encode_each_image_once(model: PreTrainedModel) -> Iterator[None]:
    """While active, the vision tower encodes only the first half of a batch whose second half repeats it (TRL's
    vision collator lays images out as [chosen rows' images, rejected rows' same images]) and reuses the result:
    the same numbers, half the vision compute; autograd adds up both uses' gradients. Other batches pass through."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a LoRA wrapper
    visual = getattr(getattr(base, "model", None), "visual", None)
    if visual is None:
        yield
        return
    original = visual.forward

    def forward(pixel_values: torch.Tensor, grid_thw: torch.Tensor | None = None, **kwargs: Any) -> Any:
        rows = repeated_half(pixel_values, grid_thw)
        if rows is None:
            return original(pixel_values, grid_thw=grid_thw, **kwargs)
        out = original(pixel_values[:rows], grid_thw=grid_thw[: len(grid_thw) // 2], **kwargs)
        for field, value in out.items():  # each image's rows (patches, merged tokens, Qwen3-VL's deepstack features)
            if isinstance(value, torch.Tensor):
                out[field] = torch.cat([value] * 2)
            elif isinstance(value, (list, tuple)):
                out[field] = type(value)(torch.cat([part] * 2) for part in value)
        return out

    with replaced_forward(visual, forward):
        yield


@contextlib.contextmanager
def score_completions_only() -> Iterator[None]:
    """While active, TRL's fused LM head on CPU scores only the positions with a label (the completions), as it does
    on CUDA, instead of every position: TRL scores all of them off CUDA to keep tile shapes fixed for compiled
    backends (Neuron), which eager CPU does not need. The prompt and padding positions come out 0 either way; on
    the tiny VLM they are ~70% of the positions."""
    original = trl_utils._use_triton  # raises AttributeError if TRL renamed it: then drop this context
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def reference_logps(trainer: PairDPOTrainer, dataset: Dataset, batch_size: int) -> tuple[list[float], list[float]]:
    """(chosen, rejected) summed log-probs of the trainer's model over `dataset`, in order, through TRL's own
    collator and reference forward, so they equal what the uncached path computes each step. Run it before training,
    on a trainer built from the reference weights. Each batch goes where the model takes its inputs: its token
    embeddings' device (the first GPU of a model a device_map spreads; the hooks of the others move it on)."""
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False)
    model = trainer.model
    device = model.get_input_embeddings().weight.device
    was_training = model.training
    model.eval()
    chosen: list[float] = []
    rejected: list[float] = []
    for batch in loader:
        batch = send_to_device({k: v for k, v in batch.items() if k not in PAIR_FIELDS}, device)
        with _one_pass_per_pair(model):
            ref_chosen, ref_rejected = trainer.compute_ref_log_probs(model, batch)
        chosen += ref_chosen.tolist()
        rejected += ref_rejected.tolist()
    model.train(was_training)
    return chosen, rejected
