"""The prompt of a DPO pair run through the language model once, not once per answer.

TRL's preference batch is [chosen rows, rejected rows], and row i and row B+i start with the same prompt (image
tokens included), often with a few answer tokens in common too. A causal model's hidden state at a position depends
only on the tokens up to it, so over that common prefix both rows' hidden states are equal. `share_prefix` computes
them once (the prefix's keys and values cached, with gradients) and then runs only each row's own tail against that
cache; the hidden states come back in TRL's layout, so TRL's LM head and loss code run unchanged. Positions are
Qwen2-VL's M-RoPE ids of the full rows, as the plain forward computes them, so the numbers equal TRL's up to float
summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast


@contextlib.contextmanager
def share_prefix(model: PreTrainedModel) -> Iterator[None]:
    """While active, the model's backbone runs each pair's common prefix once (see the module docstring); batches
    that are not [chosen rows, rejected rows] of one prompt each, and models without M-RoPE, pass through."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a LoRA wrapper
    backbone = getattr(base, "model", None)
    if backbone is None or not hasattr(backbone, "get_rope_index"):
        yield
        return
    original = backbone.forward

    def forward(
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> Any:
        shared = _shared_lengths(input_ids, attention_mask, kwargs)
        if shared is None:
            return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return _prefix_then_tails(backbone, input_ids, attention_mask, shared, kwargs)

    with replaced_forward(backbone, forward):
        yield


@contextlib.contextmanager
def replaced_forward(module: torch.nn.Module, forward: Any) -> Iterator[None]:
    """`module.forward` is `forward` while active, then what it was: the class's, or the wrapper of the hook that
    accelerate's device_map dispatch put there to move the module's inputs to its GPU (dropping it breaks later
    batches whose inputs are on another card)."""
    before = vars(module).get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if before is None:
            del module.forward  # back to the class's forward
        else:
            module.forward = before


def _shared_lengths(ids: torch.Tensor | None, mask: torch.Tensor | None, kwargs: dict[str, Any]) -> torch.Tensor | None:
    """Per pair, how many leading tokens its two rows share (at least the prompt with its images), or None when the
    batch is not a plain left-aligned [chosen rows, rejected rows] training batch."""
    plain = {"pixel_values", "image_grid_thw", "mm_token_type_ids", "use_cache"}
    if ids is None or mask is None or set(kwargs) - plain or kwargs.get("pixel_values") is None or len(ids) % 2:
        return None
    if repeated_half(kwargs["pixel_values"], kwargs.get("image_grid_thw")) is None:
        return None  # each pair's rows do not carry the same images
    if not bool(mask[:, 0].all()) or not torch.equal(mask, mask.cummin(dim=1).values):
        return None  # padding is not all on the right
    half = len(ids) // 2
    same = (ids[:half] == ids[half:]) & mask[:half].bool() & mask[half:].bool()
    shared = same.long().cummin(dim=1).values.sum(dim=1)
    types = kwargs["mm_token_type_ids"]
    columns = torch.arange(ids.shape[1], device=ids.device)
    tails = columns >= torch.cat([shared, shared])[:, None]
    if bool((types.bool() & tails).any()) or not bool((shared > 0).all()):
        return None  # an image token outside the shared prefix: the rows do not share their prompt
    if not bool((mask.sum(dim=1) > torch.cat([shared, shared])).any()):
        return None  # no row has a token of its own (truncated within the prompt)
    return shared


def _prefix_then_tails(
    backbone: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    shared: torch.Tensor,
    kwargs: dict[str, Any],
) -> Any:
    half, width = len(ids) // 2, ids.shape[1]
    grid, types = kwargs["image_grid_thw"], kwargs["mm_token_type_ids"]
    positions, _ = backbone.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)  # (3, 2B, L)
    prefix = int(shared.max())
    columns = torch.arange(width, device=ids.device)
    prefix_mask = (columns[:prefix] < shared[:, None]).long()
    embeds = backbone.get_input_embeddings()(ids[:half, :prefix])
    pixels = kwargs["pixel_values"][: repeated_half(kwargs["pixel_values"], grid)]  # the second half repeats it
    images = backbone.get_image_features(pixels, grid[: len(grid) // 2]).pooler_output
    images = torch.cat(images, dim=0).to(embeds.device, embeds.dtype)
    image_mask, _ = backbone.get_placeholder_mask(ids[:half, :prefix], inputs_embeds=embeds, image_features=images)
    embeds = embeds.masked_scatter(image_mask, images)
    cache = DynamicCache()
    head = backbone.language_model(
        inputs_embeds=embeds,
        attention_mask=prefix_mask,
        position_ids=positions[:, :half, :prefix],
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    cache.reorder_cache(torch.cat([torch.arange(half)] * 2).to(ids.device))  # each pair's prefix for both its rows
    starts = torch.cat([shared, shared])
    lengths = mask.sum(dim=1)
    tail_width = int((lengths - starts).max())
    take = (starts[:, None] + torch.arange(tail_width, device=ids.device)).clamp(max=width - 1)
    tail_mask = torch.gather(mask, 1, take) * (take < lengths[:, None])
    tail = backbone.language_model(
        inputs_embeds=backbone.get_input_embeddings()(torch.gather(ids, 1, take)),
        attention_mask=torch.cat([torch.cat([prefix_mask] * 2), tail_mask], dim=1),
        position_ids=torch.gather(positions, 2, take.expand(3, -1, -1)),
        past_key_values=cache,
        use_cache=False,
    ).last_hidden_state
    # back into TRL's layout: each row's shared columns from the prefix pass, the rest from its tail, on the device
    # the last layers left them on (another GPU than the inputs' where a device_map spreads the layers)
    size, columns, starts = head.shape[-1], columns.to(head.device), starts.to(head.device)
    from_head = torch.cat([head, head])[:, columns.clamp(max=prefix - 1)]
    at = (columns - starts[:, None]).clamp(0, tail_width - 1)
    from_tail = tail.gather(1, at[..., None].expand(-1, -1, size))
    return BaseModelOutputWithPast(
        last_hidden_state=torch.where((columns < starts[:, None])[..., None], from_head, from_tail)
    )


def repeated_half(pixel_values: torch.Tensor, grid_thw: torch.Tensor | None) -> int | None:
    """Patch rows of the first half of the images when the second half repeats it exactly, else None."""
    if grid_thw is None or len(grid_thw) % 2 or not torch.equal(*grid_thw.chunk(2)):
        return None
    rows = int(grid_thw[: len(grid_thw) // 2].prod(-1).sum())
    if 2 * rows != len(pixel_values) or not torch.equal(pixel_values[:rows], pixel_values[rows:]):
        return None
    return rows
