"""On-policy rollouts: N samples per prompt from the policy itself, one row per sample."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import polars as pl
from PIL import Image

from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest, SamplingParams
from vlm_rl_assets.store import schemas


def derive_seed(base: int, *parts: int) -> int:
    """A seed for a sub-run (a shard, a temperature) that depends only on `base` and its position.

    Hashed rather than added, so the engine's own `seed + batch index` never lands on a sibling's seed.
    """
    digest = hashlib.sha256(":".join(map(str, (base, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits: a valid seed for every engine


def split_samples(n: int, temperatures: Sequence[float]) -> list[tuple[float, int]]:
    """(temperature, samples) pairs covering `n` samples evenly, the first taking the remainder: 8 over 3 is 3/3/2."""
    if not temperatures:
        raise ValueError("split_samples needs at least one temperature")
    if n < len(temperatures):
        raise ValueError(
            f"{len(temperatures)} sweep temperatures need at least as many samples per prompt, got {n}: "
            "raise the category's samples_per_prompt or shorten engine.temperatures"
        )
    share, extra = divmod(n, len(temperatures))
    return [(t, share + (i < extra)) for i, t in enumerate(temperatures)]


def sample_rollouts(
    engine: Engine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    params: SamplingParams,
    policy_id: str,
    temperatures: Sequence[float] = (),
) -> pl.DataFrame:
    """`params.n` samples per prompt, split across `temperatures` when given (else all at `params.temperature`).

    sample_idx runs 0..n-1 per prompt, temperature by temperature; each temperature samples with its
    own seed derived from `params.seed`, recorded per row with its temperature.
    """
    requests = [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images)]
    slots = split_samples(params.n, temperatures or [params.temperature])
    groups: list[list[dict]] = [[] for _ in requests]
    first_idx = 0
    for slot, (temperature, n) in enumerate(slots):
        slot_params = replace(params, n=n, temperature=temperature, seed=derive_seed(params.seed, slot))
        for group, completions in zip(groups, engine.generate(requests, slot_params)):
            group.extend(
                {
                    "sample_idx": first_idx + idx,
                    "response": c.text,
                    "n_tokens": c.n_tokens,
                    "finish_reason": c.finish_reason,
                    "seed": slot_params.seed,
                    "temperature": temperature,
                }
                for idx, c in enumerate(completions)
            )
        first_idx += n
    rows = [
        {"prompt_id": pid, **sample, "policy_id": policy_id, "engine": engine.name, "top_p": params.top_p}
        for pid, group in zip(prompts["prompt_id"], groups)
        for sample in group
    ]
    return pl.DataFrame(rows, schema=schemas.ROLLOUTS) if rows else schemas.empty(schemas.ROLLOUTS)
