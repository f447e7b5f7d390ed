"""A model's shape as the memory plan needs it, read from its folder's JSON files alone: no weights are loaded, torch
and transformers are not imported, so a config is checked at load in milliseconds.

Parameters are counted from the safetensors headers where the folder holds weights (exact, any family), else from
config.json's sizes for the Qwen-VL families (tests check the count against the model transformers builds); another
family's folder without weights raises ShapeUnknown. The image tokens are the processor's at its largest size, by
the family's rule (images.py).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vlm_rl_assets.planning.images import RULES, ImageBound, image_bound, pixel_budget, side_of

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8}
QWEN_VL = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")  # the families whose sizes are counted (no model_type: Qwen2-VL's)
GATED = ("qwen2_5_vl", "mistral3")  # vision MLPs of gate, up and down projections
VISION_MODULES = ("visual", "vision_tower", "vision_model")  # what transformers' get_encoder(modality="image") finds


class ShapeUnknown(ValueError):
    """A folder the plan cannot size from its files: no processor config, a size config.json lacks, or no weights for
    a family whose parameters config.json's sizes are not counted for."""


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
    qkv_bias: bool = True  # Qwen2's q/k/v biases; Qwen3's text model has none
    qk_norm: bool = False  # Qwen3's RMSNorm of each head's queries and keys

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
        biases = self.layers * (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        qk_norms = 2 * self.layers * self.head_dim if self.qk_norm else 0
        return embeddings + linears + biases + qk_norms + (2 * self.layers + 1) * self.hidden


@dataclass(frozen=True)
class VisionShape:
    width: int  # the vision transformer's embedding width
    mlp: int
    depth: int
    heads: int
    patch: int
    merge: int  # Qwen-VL: patches merged into one image token per side
    out_width: int  # Qwen-VL: the text model's width the merger projects into
    temporal_patch: int = 2  # Qwen-VL: frames per patch (an image is repeated); 1 elsewhere
    family: str = "qwen2_vl"  # config.json's model_type
    positions: int = 0  # Qwen3-VL's learned position embeddings
    deepstack: int = 0  # Qwen3-VL's mergers of intermediate blocks' features

    @property
    def qwen(self) -> bool:
        """A Qwen-VL tower, or one of a family read as Qwen2-VL: fused qkv, a merger into the text model."""
        return self.family not in RULES

    @property
    def pixel_values(self) -> int:
        """Values one patch takes in a batch's pixel_values."""
        return 3 * self.temporal_patch * self.patch**2

    def linear_shapes(self) -> list[tuple[int, int]]:
        """Each block's attention and MLP projections; Qwen-VL's mergers (another tower's projector, a few small
        linears, is left out)."""
        w, m = self.width, self.mlp
        attention = [(w, 3 * w), (w, w)] if self.qwen else [(w, w)] * 4
        mlp = [(w, m), (w, m), (m, w)] if self.family in GATED else [(w, m), (m, w)]
        merged = w * self.merge**2
        mergers = [(merged, merged), (merged, self.out_width)] * (1 + self.deepstack) if self.qwen else []
        return (attention + mlp) * self.depth + mergers

    def parameters(self) -> int:
        """A Qwen-VL tower's: no other family's is counted from its sizes."""
        w = self.width
        norm = w if self.family == "qwen2_5_vl" else 2 * w  # RMSNorm's weight; LayerNorm's weight and bias
        patch_bias = w if self.family == "qwen3_vl" else 0  # Qwen3-VL's patch embedding alone has one
        patch_embed = 3 * self.temporal_patch * self.patch**2 * w + patch_bias
        linears = sum(i * o + o for i, o in self.linear_shapes())
        deepstack_norms = self.deepstack * 2 * w * self.merge**2  # LayerNorms over the merged width
        return patch_embed + self.positions * w + linears + (2 * self.depth + 1) * norm + deepstack_norms


@dataclass(frozen=True)
class ModelShape:
    """What sizes memory: parameter counts and bytes, the text model's and vision tower's dimensions, and the image
    tokens (and vision patches) one image becomes at the processor's largest size."""

    name: str
    dtype: str
    parameters: int
    vision_parameters: int
    text: TextShape
    vision: VisionShape
    images: ImageBound
    counted_from: str  # "weights" (safetensors headers) or "config" (config.json's sizes)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def image_tokens(self) -> int:
        return self.images.tokens

    @property
    def image_patches(self) -> int:
        return self.images.patches

    def lora_parameters(self, rank: int, targets: tuple[str, ...] | str, with_vision: bool) -> int:
        """Adapter parameters: rank x (in + out) per adapted linear (all-linear: every projection; named targets are
        taken as the text model's attention and MLP projections they name, the common q/k/v/o/gate/up/down)."""
        shapes = self.text.linear_shapes() + (self.vision.linear_shapes() if with_vision else [])
        if targets != "all-linear":
            shapes = _named_linears(self.text, targets)
        return sum(rank * (i + o) for i, o in shapes)

    def with_max_pixels(self, max_pixels: int) -> ModelShape:
        return replace(self, images=pixel_budget(max_pixels, self.vision.patch, self.vision.merge))


def _named_linears(text: TextShape, targets: tuple[str, ...] | str) -> list[tuple[int, int]]:
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    per_layer = dict(zip(names, text.linear_shapes()[:7]))
    return [per_layer[t] for t in targets if t in per_layer] * text.layers


def shape_of_config(config: dict[str, Any], processor: dict[str, Any], name: str) -> ModelShape:
    """The shape config.json and the processor's settings describe, parameters counted from the sizes."""
    return _shape(config, processor, name, None)


def shape_of_folder(folder: str | Path) -> ModelShape:
    """The shape of a save_pretrained folder: config.json and the processor's config, parameters from the weights'
    safetensors headers when the folder holds them."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    processor = _processor_config(folder)
    if not processor:
        raise ShapeUnknown("no processor config (processor_config.json or preprocessor_config.json) to size its images")
    try:
        return _shape(config, processor, folder.name, _count_weights(folder))
    except KeyError as err:
        raise ShapeUnknown(f"config.json has no {err.args[0]!r} (nor under text_config)") from err


def _shape(config: dict[str, Any], processor: dict[str, Any], name: str, weights: tuple[int, int] | None) -> ModelShape:
    """`weights`: (all, vision tower's) parameters from the safetensors headers; None: counted from the sizes."""
    text, vision = _text_shape(config), _vision_shape(config)
    if weights is None and vision.family not in QWEN_VL:
        raise ShapeUnknown(
            f"{name} holds no weights: the memory plan counts the parameters of {vision.family} models from their "
            f"safetensors headers (config.json's sizes are counted for {', '.join(QWEN_VL)} only); put the "
            "checkpoint's *.safetensors files beside its config.json"
        )
    total, tower = weights or (text.parameters() + vision.parameters(), vision.parameters())
    return ModelShape(
        name=name,
        dtype=config.get("dtype") or config.get("torch_dtype") or "float32",
        parameters=total,
        vision_parameters=tower,
        text=text,
        vision=vision,
        images=image_bound(config, processor, vision.patch, vision.merge),
        counted_from="config" if weights is None else "weights",
    )


def _text_shape(config: dict[str, Any]) -> TextShape:
    c = config.get("text_config") or config
    heads = c["num_attention_heads"]
    return TextShape(
        hidden=c["hidden_size"],
        intermediate=c["intermediate_size"],
        layers=c["num_hidden_layers"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        vocab=c["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", c.get("tie_word_embeddings", False))),
        qkv_bias=c.get("attention_bias", True),  # Qwen2's text configs have no such key: its q/k/v are biased
        qk_norm=config.get("model_type") == "qwen3_vl",
    )


def _vision_shape(config: dict[str, Any]) -> VisionShape:
    """Qwen-VL's keys (embed_dim, depth, num_heads) or a SigLIP/CLIP-style tower's (hidden_size, num_hidden_layers,
    num_attention_heads)."""
    c = config.get("vision_config") or {}
    family = config.get("model_type", "qwen2_vl")
    width = c.get("embed_dim") or c.get("hidden_size", 1280)
    text_hidden = (config.get("text_config") or config)["hidden_size"]
    qwen = family not in RULES
    return VisionShape(
        width=width,
        mlp=c.get("intermediate_size") or int(c.get("mlp_ratio", 4) * width),
        depth=c.get("depth") or c.get("num_hidden_layers", 32),
        heads=c.get("num_heads") or c.get("num_attention_heads", 16),
        patch=side_of(c.get("patch_size", 14)),
        merge=c.get("spatial_merge_size", 2) if qwen else 1,
        # Qwen2-VL names the merger's output hidden_size (beside embed_dim); Qwen2.5-VL out_hidden_size
        out_width=c.get("out_hidden_size") or (c.get("hidden_size") if "embed_dim" in c else None) or text_hidden,
        temporal_patch=c.get("temporal_patch_size", 2) if qwen else 1,
        family=family,
        positions=c.get("num_position_embeddings", 0),
        deepstack=len(c.get("deepstack_visual_indexes", ())),
    )


def _processor_config(folder: Path) -> dict[str, Any]:
    """The processor's settings with its image processor's over them: transformers 5's processor_config.json nests
    the image processor's, older folders keep them in preprocessor_config.json."""
    settings: dict[str, Any] = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            raw = json.loads((folder / name).read_text())
            settings |= {k: v for k, v in raw.items() if k not in ("image_processor", "video_processor")}
            settings |= raw.get("image_processor", {})
    return settings


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
            vision += count if key.removeprefix("model.").split(".")[0] in VISION_MODULES else 0
    return total, vision


def embedded_shape() -> ModelShape:
    """The embedded default before it is built: the tiny spec's sizes, its vocabulary at the BPE upper bound."""
    from vlm_rl_assets.model.tiny_model import TinyVLMSpec, model_sizes

    spec = TinyVLMSpec()
    processor = {"max_pixels": spec.max_pixels, "patch_size": spec.patch_size, "merge_size": spec.merge_size}
    return shape_of_config(model_sizes(spec, spec.max_vocab_size), processor, "embedded tiny Qwen2-VL")
