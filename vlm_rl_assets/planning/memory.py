"""Peak memory of one process (one GPU, or the CPU) in each kind of step, from the model's shape and the step's
sizes: weights, gradients, optimizer states, activations, logits, the KV cache. Each term is a named `Part`, so
the plan shows where memory goes and which change shrinks it.

Activations count the tensors autograd keeps per token and layer; the coefficients are first principles (see each
term) checked against measured peaks on CPU (bench/memory_plan.py, bench/RESULTS.md "memory plan").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlm_rl_assets.planning.shape import ModelShape
from vlm_rl_assets.readable import quantity

GiB = 1024**3
FP32 = 4

# Tensors a Qwen2-style decoder layer keeps for backward, per token, in units of the hidden width and the MLP width:
# the two RMSNorms (input, float32 copy, output: 3 each), q/k/v and their rotary copies, attention output, o_proj
# output and the residual sum (~6), and gate, up, SiLU(gate) and their product (4 MLP widths).
LAYER_HIDDEN, LAYER_MLP = 12, 4
# A vision block per patch: its two LayerNorms, qkv (3), attention output and projection (~10 widths), fc1's
# output and the activation's input and output (3 MLP widths).
VISION_WIDTH, VISION_MLP = 10, 3
# Logits per token at the loss: the LM head's output, its float32 log-softmax and that one's gradient.
LOGIT_COPIES = 3

Sharding = Literal["none", "fsdp2", "zero3"]


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class TrainingSetup:
    """One training step of one process: what it trains and the tokens it sees."""

    sequences: int  # rows in one process's forward (a DPO pair is two; a GRPO group member one)
    tokens: int  # tokens those rows run through the decoder (a pair's shared prompt once)
    logit_tokens: int  # tokens whose logits the loss takes
    images: int  # images in one process's forward
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
    """(trainable parameters, bytes of each): LoRA's adapters are float32 (peft upcasts them), full fine-tuning
    trains every weight but a frozen vision tower's in the checkpoint's dtype."""
    if setup.lora_rank is not None:
        return shape.lora_parameters(setup.lora_rank, setup.lora_targets, not setup.freeze_vision), FP32
    frozen = shape.vision_parameters if setup.freeze_vision else 0
    return shape.parameters - frozen, shape.dtype_bytes


def training_parts(shape: ModelShape, setup: TrainingSetup) -> list[Part]:
    """Weights, gradients, AdamW's two states and activations of one process's training step."""
    count, each = trainable(shape, setup)
    split = f", 1/{setup.shards} each" if setup.shards > 1 else ""
    what = f"{quantity(count)} {'LoRA' if setup.lora_rank else 'trained'} parameters"
    return [
        weights(shape, setup.shards),
        Part("gradients", count * each // setup.shards, what + split),
        Part("optimizer", 2 * count * each // setup.shards, "AdamW: two states per trained parameter" + split),
        *activation_parts(shape, setup),
    ]


def activation_parts(shape: ModelShape, setup: TrainingSetup) -> list[Part]:
    text, b = shape.text, shape.dtype_bytes
    per_layer = (LAYER_HIDDEN * text.hidden + LAYER_MLP * text.intermediate) * b
    if setup.gradient_checkpointing:  # each layer's input kept, one layer's tensors rebuilt at a time
        decoder = setup.tokens * (text.layers * text.hidden * b + per_layer)
        how = "gradient checkpointing: layer inputs + one layer"
    else:
        decoder = setup.tokens * text.layers * per_layer
        how = f"{setup.tokens} tokens x {text.layers} layers"
    parts = [
        Part("activations", decoder, how),
        Part("logits", setup.logit_tokens * text.vocab * (b + (LOGIT_COPIES - 1) * FP32), f"vocab {text.vocab}"),
    ]
    patches = setup.images * shape.image_patches
    v = shape.vision
    per_block = (VISION_WIDTH * v.width + VISION_MLP * v.mlp) * b
    if setup.freeze_vision:  # no grad: one block's tensors at a time
        parts.append(Part("vision activations", patches * per_block, f"{patches} patches, frozen tower"))
    else:
        blocks = v.depth if not setup.gradient_checkpointing else 1
        parts.append(Part("vision activations", patches * blocks * per_block, f"{patches} patches x {blocks} blocks"))
    return parts


def forward_parts(shape: ModelShape, sequences: int, tokens: int, logit_tokens: int) -> list[Part]:
    """A no-grad forward: one layer's tensors at a time, and the logits it keeps."""
    text, b = shape.text, shape.dtype_bytes
    per_token = (2 * text.intermediate + 4 * text.hidden) * b
    patches = sequences * shape.image_patches
    vision = patches * (4 * shape.vision.width + 2 * shape.vision.mlp) * b
    return [
        Part("forward", tokens * per_token + vision, f"{tokens} tokens, one layer at a time"),
        Part("logits", logit_tokens * text.vocab * FP32, f"vocab {text.vocab}"),
    ]


def kv_cache(shape: ModelShape, sequences: int, length: int, name: str = "KV cache") -> Part:
    elements = sequences * length * shape.text.kv_elements_per_token
    return Part(name, elements * shape.dtype_bytes, f"{sequences} sequences x {length} tokens")


def total(parts: list[Part]) -> int:
    return sum(p.bytes for p in parts)
