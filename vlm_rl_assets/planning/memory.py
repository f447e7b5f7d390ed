"""Peak memory of one process (one GPU, or the CPU) in each kind of step, from the model's shape and the step's
sizes. Each term is a named `Part`; a part held through the step has no phase, the others belong to one moment of it
(the start of backward, its end, sampling, ...), and the peak is what is held plus the largest moment.

The terms are first principles, checked against measured peaks of the project's own stages on CPU (profiler
allocation events; bench/memory_measure.py, bench/RESULTS.md "memory plan"), which showed where each peak falls:
training peaks when backward starts, every activation and TRL's LM-head tile live, no gradient yet; a no-grad pass
peaks at its LM-head tile, a layer's temporaries freed by then; generation peaks in the prompt's prefill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlm_rl_assets.planning.shape import ModelShape
from vlm_rl_assets.readable import quantity

GiB = 1024**3
FP32 = 4

# Tensors a Qwen2-style decoder layer keeps for backward, per token, in hidden and MLP widths: the two RMSNorms'
# inputs, float32 copies and outputs, q/k/v and their rotary copies, the attention output, o_proj's output and the
# residual sum; gate, up, SiLU(gate) and their product. Measured: 48 KB per token and layer at hidden 512, MLP 1408
# in float32 (12 x 512 + 4 x 1408 elements = 47 KB).
LAYER_HIDDEN, LAYER_MLP = 12, 4
# A vision block per patch, in its width and MLP width: norms, qkv, attention and projection; fc1's output and the
# activation's. Measured: 25 KB per patch and block at width 256, MLP 1024 in float32 (24.6 KB).
VISION_WIDTH, VISION_MLP = 12, 3
# A no-grad layer's temporaries per token: the MLP's gate, up and product, the hidden states around them.
FORWARD_HIDDEN, FORWARD_MLP = 4, 2
# TRL's chunked log-prob (trl/kernels/chunked_logprob.py) projects at most 4096 tokens onto 32768 vocabulary columns
# at a time, in float32, whatever the vocabulary: its one tile is the only logits a DPO/GRPO loss holds.
LM_HEAD_TOKENS, LM_HEAD_COLUMNS = 4096, 32768

Sharding = Literal["none", "fsdp2", "zero3"]
BACKWARD, GRADIENTS, SAMPLING = "backward starts", "backward ends", "sampling"
RECOMPUTE, RECOMPUTE_VISION = "a layer is recomputed", "a vision block is recomputed"
PREFILL, DECODE, FORWARD, LOSS = "prefill", "decode", "forward", "log-probs"


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int
    note: str = ""
    phase: str = ""  # "": held through the step; else the moment of the step it is live in


def peak_bytes(parts: list[Part] | tuple[Part, ...]) -> int:
    """What is held plus the largest moment."""
    moments: dict[str, int] = {}
    for part in parts:
        if part.phase:
            moments[part.phase] = moments.get(part.phase, 0) + part.bytes
    return sum(p.bytes for p in parts if not p.phase) + max(moments.values(), default=0)


@dataclass(frozen=True)
class TrainingSetup:
    """One training step of one process: what it trains and the tokens it sees."""

    tokens: int  # tokens the decoder runs (a DPO pair's shared prompt once)
    logit_tokens: int  # tokens the loss scores
    images: int  # images the vision tower encodes
    batch_images: int  # images in the collated batch (its pixel values)
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] | str = "all-linear"
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    sharding: Sharding = "none"
    processes: int = 1

    @property
    def shards(self) -> int:
        return self.processes if self.sharding != "none" else 1


def weights(shape: ModelShape, shards: int = 1, name: str = "weights") -> Part:
    note = f"{quantity(shape.parameters)} parameters in {shape.dtype}" + (f", 1/{shards} each" if shards > 1 else "")
    return Part(name, shape.parameters * shape.dtype_bytes // shards, note)


def trainable(shape: ModelShape, setup: TrainingSetup) -> tuple[int, int]:
    """(trainable parameters, bytes of each): LoRA's adapters are float32 (peft upcasts them); full fine-tuning
    trains every weight but a frozen vision tower's, in the checkpoint's dtype unsharded (pure bf16), in float32 when
    sharded (a sharded bf16 run is mixed precision: accelerate upcasts the trained weights of FSDP2, DeepSpeed keeps
    a float32 master copy; training/sharding.py)."""
    if setup.lora_rank is not None:
        return shape.lora_parameters(setup.lora_rank, setup.lora_targets, not setup.freeze_vision), FP32
    frozen = shape.vision_parameters if setup.freeze_vision else 0
    return shape.parameters - frozen, FP32 if setup.sharding != "none" else shape.dtype_bytes


def training_parts(shape: ModelShape, setup: TrainingSetup) -> list[Part]:
    """Weights, AdamW's states and the batch held; activations and the LM-head tile when backward starts; the
    gradients when it ends."""
    count, each = trainable(shape, setup)
    split = f", 1/{setup.shards} each" if setup.shards > 1 else ""
    what = f"{quantity(count)} {'LoRA' if setup.lora_rank else 'trained'} parameters"
    held = weights(shape, setup.shards)
    if setup.lora_rank is None and each != shape.dtype_bytes:  # the trained weights kept in float32
        frozen = shape.parameters - count
        size = (frozen * shape.dtype_bytes + count * each) // setup.shards
        held = Part("weights", size, f"{quantity(count)} trained in float32 (mixed precision){split}")
    return [
        held,
        Part("optimizer", 2 * count * each // setup.shards, "AdamW: two states per trained parameter" + split),
        pixel_values(shape, 2 * setup.batch_images, "the batch and the next one"),
        *activation_parts(shape, setup),
        lm_head(setup.logit_tokens, BACKWARD),
        *lm_head_gradient(shape, setup),
        Part("gradients", count * each // setup.shards, what + split, GRADIENTS),
    ]


def activation_parts(shape: ModelShape, setup: TrainingSetup) -> list[Part]:
    text, v, b = shape.text, shape.vision, shape.dtype_bytes
    per_layer = (LAYER_HIDDEN * text.hidden + LAYER_MLP * text.intermediate) * b
    patches = setup.images * shape.image_patches
    per_block = (VISION_WIDTH * v.width + VISION_MLP * v.mlp) * b
    if setup.gradient_checkpointing:  # each layer's input kept; one layer's tensors rebuilt at a time, after the loss
        return [
            Part("activations", setup.tokens * text.layers * text.hidden * b, "checkpointed layer inputs"),
            Part("vision activations", patches * v.depth * v.width * b, f"{patches} patches, checkpointed"),
            Part("one layer recomputed", setup.tokens * per_layer, f"{setup.tokens} tokens", RECOMPUTE),
            Part("one vision block recomputed", patches * per_block, f"{patches} patches", RECOMPUTE_VISION),
        ]
    vision = patches * per_block * (1 if setup.freeze_vision else v.depth)  # a frozen tower keeps nothing
    return [
        Part(
            "activations",
            setup.tokens * text.layers * per_layer,
            f"{setup.tokens} tokens x {text.layers} layers",
            BACKWARD,
        ),
        Part("vision activations", vision, f"{patches} patches", BACKWARD),
    ]


def lm_head(tokens: int, phase: str) -> Part:
    """TRL's log-prob tile and the float32 copy of the hidden states it projects."""
    rows = min(tokens, LM_HEAD_TOKENS)
    return Part("LM-head tile", rows * LM_HEAD_COLUMNS * FP32, f"{rows} tokens x {LM_HEAD_COLUMNS} columns", phase)


def lm_head_gradient(shape: ModelShape, setup: TrainingSetup) -> list[Part]:
    """TRL's chunked log-prob accumulates the trained LM head's weight gradient in float32 when backward starts
    (vocabulary x hidden; LoRA leaves the head frozen)."""
    if setup.lora_rank is not None:
        return []
    size = shape.text.vocab * shape.text.hidden * FP32
    return [Part("LM-head weight gradient", size, f"vocab {shape.text.vocab} x {shape.text.hidden}, float32", BACKWARD)]


def pixel_values(shape: ModelShape, images: int, note: str) -> Part:
    size = images * shape.image_patches * shape.vision.pixel_values * FP32
    return Part("pixel values", size, f"{images} images, {note}")


def forward_parts(shape: ModelShape, tokens: int, images: int, phase: str) -> list[Part]:
    """A no-grad pass's temporaries at its largest moment: the vision tower's or one decoder layer's."""
    text, v, b = shape.text, shape.vision, shape.dtype_bytes
    layer = tokens * (FORWARD_HIDDEN * text.hidden + FORWARD_MLP * text.intermediate) * b
    vision = images * shape.image_patches * (FORWARD_HIDDEN * v.width + FORWARD_MLP * v.mlp) * b
    name, size = ("vision tower", vision) if vision > layer else ("one layer", layer)
    return [Part(name, size, f"{tokens} tokens, {images} images, no grad", phase)]


def kv_cache(shape: ModelShape, sequences: int, length: int, phase: str, name: str = "KV cache") -> Part:
    elements = sequences * length * shape.text.kv_elements_per_token
    return Part(name, elements * shape.dtype_bytes, f"{sequences} sequences x {length} tokens", phase)


def generation_parts(shape: ModelShape, sequences: int, prompt: int, new_tokens: int, phase: str = "") -> list[Part]:
    """transformers' generate: the prefill (the prompts' keys and values and a layer's temporaries) or the full KV
    cache when decoding ends, whichever is larger; `phase` names the moment for a stage with others."""
    prefill = [
        kv_cache(shape, sequences, prompt, phase or PREFILL),
        *forward_parts(shape, sequences * prompt, sequences, phase or PREFILL),
    ]
    decode = [kv_cache(shape, sequences, prompt + new_tokens, phase or DECODE)]
    return prefill if peak_bytes(prefill) >= peak_bytes(decode) else decode
