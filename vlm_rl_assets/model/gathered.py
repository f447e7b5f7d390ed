"""A sharded run's trained weights as the same `save_pretrained` folder an unsharded run writes.

Under FSDP2 or ZeRO-3 no process holds whole tensors: accelerate gathers them (`Accelerator.get_state_dict`: FSDP2's
full state dict, ZeRO-3's 16-bit consolidation), a collective every process must enter. The sharded model itself is
no good to save from: FSDP2 trains float32 master weights under bf16 mixed precision, so its `save_pretrained` would
name float32 in config.json and double the folder, and LoRA adapters cannot be merged into sharded weights. The main
process instead copies the gathered weights into the base model loaded unsharded in its own dtype (with the run's
adapters added, then merged) and saves that, exactly as an unsharded run saves its model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_rl_assets.model.loading import load_model

if TYPE_CHECKING:
    import torch


def save_gathered(
    state_dict: dict[str, torch.Tensor], base_dir: str | Path, out_dir: str | Path, lora: Any | None = None
) -> None:
    """Save `state_dict` (the whole model's, as accelerate gathered it) as a `save_pretrained` folder in `out_dir`,
    in the dtype of the checkpoint in `base_dir` the run started from; with `lora` (the run's peft config) the
    state dict is a LoRA model's, whose adapters are merged first. Every weight must be there (a strict load)."""
    model = load_model(base_dir)
    if lora is not None:
        from peft import get_peft_model  # imported here: only LoRA runs pay for it

        model = get_peft_model(model, lora)
    model.load_state_dict(state_dict)  # copies into the base's tensors: float32 master weights become its dtype
    if lora is not None:
        model = model.merge_and_unload()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
