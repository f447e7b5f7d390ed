"""A model's shape as the memory plan needs it, read from its folder's JSON files alone: no weights are loaded, torch
and transformers are not imported, so a config is checked at load in milliseconds.

Parameters are counted from the safetensors headers where the folder holds weights (exact, any family), else from
config.json's sizes (a Qwen2-VL-style decoder and vision tower; tests check the count against the model transformers
builds on the meta device). The image tokens are the processor's at its max pixels.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8}
VISION_PREFIXES = ("visual", "vision_tower", "vision_model", "model.visual", "model.vision_tower", "multi_modal")


@dataclass(frozen=True)
class TextShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool

    @property
    def kv_elements_per_token(self) -> int:
        """Elements one token takes in the KV cache: keys and values of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer LoRA's all-linear adapts: attention and MLP projections of every layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = [(self.hidden, q), (self.hidden, kv), (self.hidden, kv), (q, self.hidden)]
        per_layer += [(self.hidden, self.intermediate)] * 2 + [(self.intermediate, self.hidden)]
        return per_layer * self.layers

    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        linears = sum(i * o for i, o in self.linear_shapes())
        biases = self.layers * (self.heads + 2 * self.kv_heads) * self.head_dim  # Qwen2's q/k/v biases
        return embeddings + linears + biases + (2 * self.layers + 1) * self.hidden


@dataclass(frozen=True)
class VisionShape:
    width: int  # the vision transformer's embedding width
    mlp: int
    depth: int
    heads: int
    patch: int
    merge: int  # patches merged into one image token per side
    out_width: int  # the text model's width the merger projects into
    temporal_patch: int = 2

    def linear_shapes(self) -> list[tuple[int, int]]:
        blocks = [
            (self.width, 3 * self.width),
            (self.width, self.width),
            (self.width, self.mlp),
            (self.mlp, self.width),
        ]
        merged = self.width * self.merge**2
        return blocks * self.depth + [(merged, merged), (merged, self.out_width)]

    def parameters(self) -> int:
        patch_embed = 3 * self.temporal_patch * self.patch**2 * self.width
        linears = sum(i * o + o for i, o in self.linear_shapes())
        return patch_embed + linears + (4 * self.depth + 2) * self.width


@dataclass(frozen=True)
class ModelShape:
    """What sizes memory: parameter counts and bytes, the text model's and vision tower's dimensions, and the image
    tokens (and vision patches) one image becomes at the processor's max pixels."""

    name: str
    dtype: str
    parameters: int
    vision_parameters: int
    text: TextShape
    vision: VisionShape
    max_pixels: int
    counted_from: str  # "weights" (safetensors headers) or "config" (config.json's sizes)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def image_tokens(self) -> int:
        """Text-model tokens one image at max pixels becomes (Qwen2-VL: one per merge x merge patches)."""
        return max(1, self.max_pixels // (self.vision.patch * self.vision.merge) ** 2)

    @property
    def image_patches(self) -> int:
        return self.image_tokens * self.vision.merge**2

    def lora_parameters(self, rank: int, targets: tuple[str, ...] | str, with_vision: bool) -> int:
        """Adapter parameters: rank x (in + out) per adapted linear (all-linear: every projection; named targets are
        taken as the text model's attention and MLP projections they name, the common q/k/v/o/gate/up/down)."""
        shapes = self.text.linear_shapes() + (self.vision.linear_shapes() if with_vision else [])
        if targets != "all-linear":
            shapes = _named_linears(self.text, targets)
        return sum(rank * (i + o) for i, o in shapes)

    def with_max_pixels(self, max_pixels: int) -> ModelShape:
        return ModelShape(**{**self.__dict__, "max_pixels": max_pixels})


def _named_linears(text: TextShape, targets: tuple[str, ...] | str) -> list[tuple[int, int]]:
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    per_layer = dict(zip(names, text.linear_shapes()[:7]))
    return [per_layer[t] for t in targets if t in per_layer] * text.layers


def shape_of_config(config: dict[str, Any], processor: dict[str, Any], name: str) -> ModelShape:
    """The shape a Qwen2-VL-style config.json and processor config describe, parameters counted from the sizes."""
    text = _text_shape(config.get("text_config") or config)
    vision = _vision_shape(config.get("vision_config") or {}, text.hidden)
    return ModelShape(
        name=name,
        dtype=config.get("dtype") or config.get("torch_dtype") or "float32",
        parameters=text.parameters() + vision.parameters(),
        vision_parameters=vision.parameters(),
        text=text,
        vision=vision,
        max_pixels=_max_pixels(processor),
        counted_from="config",
    )


def shape_of_folder(folder: str | Path) -> ModelShape:
    """The shape of a save_pretrained folder: config.json and the processor's config, parameters from the weights'
    safetensors headers when the folder holds them."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    shape = shape_of_config(config, _processor_config(folder), folder.name)
    counted = _count_weights(folder)
    if counted is None:
        return shape
    total, vision = counted
    return ModelShape(**{**shape.__dict__, "parameters": total, "vision_parameters": vision, "counted_from": "weights"})


def _text_shape(c: dict[str, Any]) -> TextShape:
    heads = c["num_attention_heads"]
    return TextShape(
        hidden=c["hidden_size"],
        intermediate=c["intermediate_size"],
        layers=c["num_hidden_layers"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        vocab=c["vocab_size"],
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
    )


def _vision_shape(c: dict[str, Any], text_hidden: int) -> VisionShape:
    width = c.get("embed_dim") or c.get("hidden_size", 1280)
    return VisionShape(
        width=width,
        mlp=c.get("intermediate_size") or int(c.get("mlp_ratio", 4) * width),
        depth=c.get("depth") or c.get("num_hidden_layers", 32),
        heads=c.get("num_heads") or c.get("num_attention_heads", 16),
        patch=c.get("patch_size", 14),
        merge=c.get("spatial_merge_size", 2),
        # Qwen2-VL names the merger's output hidden_size (beside embed_dim); Qwen2.5-VL out_hidden_size
        out_width=c.get("out_hidden_size") or (c.get("hidden_size") if "embed_dim" in c else None) or text_hidden,
        temporal_patch=c.get("temporal_patch_size", 2),
    )


def _processor_config(folder: Path) -> dict[str, Any]:
    """The image processor's settings: transformers 5's processor_config.json nests them, older folders keep
    preprocessor_config.json."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            raw = json.loads((folder / name).read_text())
            return raw.get("image_processor", raw)
    return {}


def _max_pixels(processor: dict[str, Any]) -> int:
    """Qwen2-VL's bound: `max_pixels`, or `size.longest_edge`, which that processor reads as pixels; its default."""
    size = processor.get("size") or {}
    return int(processor.get("max_pixels") or size.get("longest_edge") or 12845056)


def _count_weights(folder: Path) -> tuple[int, int] | None:
    """(all, vision tower's) parameters from the safetensors headers: 8 bytes of length, then the JSON header."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = vision = 0
    for file in files:
        with file.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for key, tensor in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= dim
            total += count
            vision += count if key.startswith(VISION_PREFIXES) else 0
    return total, vision


def embedded_shape() -> ModelShape:
    """The embedded default before it is built: the tiny spec's sizes, its vocabulary at the BPE upper bound."""
    from vlm_rl_assets.model.tiny_model import TinyVLMSpec, model_sizes

    spec = TinyVLMSpec()
    processor = {"max_pixels": spec.max_pixels, "patch_size": spec.patch_size, "merge_size": spec.merge_size}
    return shape_of_config(model_sizes(spec, spec.max_vocab_size), processor, "embedded tiny Qwen2-VL")
