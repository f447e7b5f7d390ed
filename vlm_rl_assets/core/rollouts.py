"""On-policy rollouts: N samples per prompt from the policy itself, one row per sample."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.engine import GenerationRequest, HFEngine, SamplingParams


def model_fingerprint(model_dir: str | Path) -> str:
    """Identifies a checkpoint without reading its weights: its config plus weight file sizes and times."""
    folder = Path(model_dir)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def sample_rollouts(
    engine: HFEngine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    params: SamplingParams,
    policy_id: str,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    requests = [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images)]
    completions = engine.generate(requests, params, progress)
    rows = [
        {
            "prompt_id": pid,
            "sample_idx": idx,
            "response": c.text,
            "n_tokens": c.n_tokens,
            "finish_reason": c.finish_reason,
            "policy_id": policy_id,
            "engine": engine.name,
            "seed": params.seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        for pid, group in zip(prompts["prompt_id"], completions)
        for idx, c in enumerate(group)
    ]
    return pl.DataFrame(rows, schema=schemas.ROLLOUTS) if rows else schemas.empty(schemas.ROLLOUTS)
