"""What one image becomes at its processor's largest size, family by family: the text model's image tokens (the image
token's count in input_ids) and the vision tower's patches that encode them. Each rule is an upper bound read from
config.json and the processor's JSON alone (no transformers import: it runs at config load) and names where
transformers 5.17 makes the count, under transformers/models/. A family with no rule here is read as Qwen2-VL's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

QWEN_MAX_PIXELS = 12845056  # Qwen2-VL's released preprocessor configs: 16384 tokens an image
ANYRES_SLACK = 1.1**2  # LLaVA-OneVision cuts its grid's features only beyond 1.1 x anyres_max_N's per side


@dataclass(frozen=True)
class ImageBound:
    tokens: int  # the image token's count in input_ids for one image
    patches: int  # the patches the vision tower encodes for it
    rule: str  # what sets the count, as the plan prints it after "N image tokens"
    max_pixels: int | None = None  # Qwen-VL's pixel budget: the one image setting the plan can halve


def pixel_budget(max_pixels: int, patch: int, merge: int) -> ImageBound:
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL: qwen2_vl/image_processing_pil_qwen2_vl.py smart_resize makes both sides
    multiples of patch x merge with their product at most max_pixels; processing_qwen2_vl.py replace_image_token puts
    one token per merge x merge patches (image_grid_thw.prod() // merge_size**2)."""
    tokens = max(1, max_pixels // (patch * merge) ** 2)
    return ImageBound(tokens, tokens * merge**2, f"at {max_pixels} max pixels", max_pixels)


def image_bound(config: dict[str, Any], processor: dict[str, Any], patch: int, merge: int) -> ImageBound:
    """`processor`: the processor's settings with its image processor's over them."""
    rule = RULES.get(config.get("model_type", ""))
    if rule is None:
        size = processor.get("size") or {}  # Qwen2-VL's processor reads longest_edge as pixels
        return pixel_budget(
            int(processor.get("max_pixels") or size.get("longest_edge") or QWEN_MAX_PIXELS), patch, merge
        )
    return rule(config.get("vision_config") or {}, config, processor, patch)


def side_of(value: int | list[int]) -> int:
    """InternVL's vision config gives sizes as [height, width]."""
    return value[0] if isinstance(value, list) else value


def _view_side(vision: dict[str, Any], processor: dict[str, Any]) -> int:
    """Pixels per side of one view the tower encodes: the image processor's resize, else the tower's own size."""
    size = processor.get("size") or {}
    return size.get("height") or size.get("shortest_edge") or side_of(vision.get("image_size", 224))


def _gemma3(vision: dict, config: dict, processor: dict, patch: int) -> ImageBound:
    """gemma3/processing_gemma3.py Gemma3Processor.__init__: every image is image_seq_length soft tokens
    (mm_tokens_per_image), pooled from one view; pan-and-scan crops add views only when a call asks for them
    (Gemma3ProcessorKwargs sets do_pan_and_scan False whatever the image processor saved), which the pipeline never
    does."""
    tokens = processor.get("image_seq_length") or config.get("mm_tokens_per_image") or 256
    return ImageBound(tokens, (_view_side(vision, processor) // patch) ** 2, "fixed by image_seq_length")


def _llava_onevision(vision: dict, config: dict, processor: dict, patch: int) -> ImageBound:
    """llava_onevision/processing_llava_onevision.py _get_number_of_features: a base view of num_image_tokens, then
    the features of the image_grid_pinpoints grid the image is resized into (scale_h x scale_w views) and a newline
    token per feature row (_get_unpadded_features: padding only removes rows or columns, and features beyond
    anyres_max_N views are cut unless within 1.1 per side); images are not pooled (videos are)."""
    view = _view_side(vision, processor)
    base = processor.get("num_image_tokens") or (view // patch) ** 2
    side = math.isqrt(base)
    most_views = int((processor.get("vision_aspect_ratio") or "anyres_max_9").removeprefix("anyres_max_"))
    grids = [(h // view, w // view) for h, w in processor.get("image_grid_pinpoints") or config["image_grid_pinpoints"]]
    grid = max(
        min(side * rows * side * cols, int(ANYRES_SLACK * most_views * base)) + side * rows for rows, cols in grids
    )
    views = 1 + max(rows * cols for rows, cols in grids)
    return ImageBound(base + grid, views * (view // patch) ** 2, f"from a base view and up to {views - 1} anyres views")


def _internvl(vision: dict, config: dict, processor: dict, patch: int) -> ImageBound:
    """internvl/processing_internvl.py replace_image_token: image_seq_length <IMG_CONTEXT> per tile; the tiles from
    got_ocr2/image_processing_pil_got_ocr2.py crop_image_to_patches: a grid of at most max_patches and a thumbnail
    (InternVLProcessorKwargs sets crop_to_patches True whatever the image processor saved)."""
    seq = processor.get("image_seq_length") or config.get("image_seq_length") or 256
    most = processor.get("max_patches", 12)
    tiles = most + 1 if most > 1 else 1
    patches = tiles * (_view_side(vision, processor) // patch) ** 2
    return ImageBound(seq * tiles, patches, f"from {tiles} tiles, max_patches {most} and a thumbnail")


def _idefics3(vision: dict, config: dict, processor: dict, patch: int) -> ImageBound:
    """idefics3/processing_idefics3.py (smolvlm/processing_smolvlm.py alike) replace_image_token: image_seq_len
    <image> per tile and the global image; image_processing_pil_idefics3.py get_number_of_image_patches: the longest
    edge resized to size.longest_edge (at most 4096), cut into max_image_size.longest_edge squares when
    do_image_splitting."""
    tile_patches = (side_of(vision.get("image_size", 224)) // patch) ** 2
    seq = processor.get("image_seq_len") or tile_patches // config.get("scale_factor", 2) ** 2
    longest = min((processor.get("size") or {}).get("longest_edge", 4 * 364), 4096)
    per_side = math.ceil(longest / (processor.get("max_image_size") or {}).get("longest_edge", 364))
    split = processor.get("do_image_splitting", True) and per_side > 1
    tiles = per_side**2 + 1 if split else 1
    views = f"{per_side} x {per_side} tiles and the global image" if split else "the global image alone"
    return ImageBound(seq * tiles, tiles * tile_patches, f"from {views} at longest_edge {longest}")


def _mistral3(vision: dict, config: dict, processor: dict, patch: int) -> ImageBound:
    """pixtral/processing_pixtral.py replace_image_token: a row of [IMG] per patch x spatial_merge_size pixels of the
    image resized to at most size.longest_edge (image_processing_pil_pixtral.py get_resize_output_image_size), each
    row closed by [IMG_BREAK] or [IMG_END]."""
    merge = processor.get("spatial_merge_size") or config.get("spatial_merge_size", 1)
    longest = (processor.get("size") or {}).get("longest_edge", 1024)
    rows = math.ceil(longest / (patch * merge))
    return ImageBound(rows**2, (rows * merge) ** 2, f"in {rows} rows at longest_edge {longest}")


RULES: dict[str, Callable[[dict, dict, dict, int], ImageBound]] = {
    "gemma3": _gemma3,
    "llava_onevision": _llava_onevision,
    "internvl": _internvl,
    "idefics3": _idefics3,
    "smolvlm": _idefics3,
    "mistral3": _mistral3,
}
