"""Sharded, resumable rollouts: a killed run, run again, samples only the shards it had not finished.

Prompts are cut into shards of `shard_prompts`. Shard i samples with a seed derived from the base
seed and i, so its rows depend on nothing else that ran, and a resumed run equals an uninterrupted
one. Each shard is written atomically under a key holding the fingerprint of everything that
decides its rows (policy, engine, sampling params, shard size, the prompts), so a rerun with other
inputs finds no shards to reuse. The full table comes next, and the manifest last: a manifest means
the table beside it is complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import polars as pl
from PIL import Image

from vlm_rl_assets.rollouts.engine import Engine, SamplingParams
from vlm_rl_assets.rollouts.sampling import derive_seed, sample_rollouts
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store, spec_key

ASSET = "rollouts"


@dataclass(frozen=True)
class ShardedRollouts:
    table: pl.DataFrame  # every shard, in prompt order
    manifest: pl.DataFrame  # one ROLLOUT_MANIFEST row
    reused: tuple[int, ...]  # shard indices found from an earlier run
    generated: tuple[int, ...]  # shard indices sampled by this run
    generated_tokens: int
    generate_seconds: float


def shard_key(category: str, fingerprint: str, index: int) -> str:
    return f"{category}/shards/{fingerprint}/{index:05d}"


def manifest_key(category: str) -> str:
    return f"{category}/manifest"


def rollout_fingerprint(
    prompts: pl.DataFrame,
    params: SamplingParams,
    temperatures: Sequence[float],
    policy_id: str,
    engine_name: str,
    shard_prompts: int,
) -> str:
    """A hash of every input that decides the rollout rows (the engine's batch size only reorders random numbers)."""
    spec = {
        "policy_id": policy_id,
        "engine": engine_name,
        "n": params.n,
        "temperatures": list(temperatures),
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "seed": params.seed,
        "shard_prompts": shard_prompts,
        "prompts": prompts.select("prompt_id", "prompt_text", "images").rows(),
    }
    return spec_key(spec)


def sharded_rollouts(
    engine: Engine,
    store: Store,
    category: str,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    params: SamplingParams,
    policy_id: str,
    *,
    shard_prompts: int,
    temperatures: Sequence[float] = (),
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ShardedRollouts:
    """Sample the shards the store lacks, then write `rollouts/<category>` and its manifest.

    `progress(done, total)` is called after each sampled shard, counting only the shards this run
    samples; `log` hears once, before sampling, how many shards an earlier run left.
    """
    if shard_prompts < 1:
        raise ValueError(f"shard_prompts must be >= 1, got {shard_prompts}")
    temperatures = list(temperatures) or [params.temperature]
    fingerprint = rollout_fingerprint(prompts, params, temperatures, policy_id, engine.name, shard_prompts)
    starts = range(0, prompts.height, shard_prompts)
    keys = [shard_key(category, fingerprint, i) for i in range(len(starts))]
    missing = [i for i, key in enumerate(keys) if not store.has_table(ASSET, key)]
    if log is not None:
        earlier = len(keys) - len(missing)
        log(f"rollouts[{category}]: {earlier} of {len(keys)} shards done earlier ({fingerprint}), sampling the rest")
    shards: dict[int, pl.DataFrame] = {}
    begin = time.monotonic()
    for done, i in enumerate(missing, 1):
        start = starts[i]
        shards[i] = sample_rollouts(
            engine,
            prompts.slice(start, shard_prompts),
            images[start : start + shard_prompts],
            replace(params, seed=derive_seed(params.seed, i)),
            policy_id,
            temperatures,
        )
        store.write_table(ASSET, keys[i], shards[i], schemas.ROLLOUTS)
        if progress is not None:
            progress(done, len(missing))
    generate_seconds = time.monotonic() - begin
    generated_tokens = sum(int(shard["n_tokens"].sum()) for shard in shards.values())
    parts = [shards[i] if i in shards else store.read_table(ASSET, key, schemas.ROLLOUTS) for i, key in enumerate(keys)]
    table = pl.concat(parts) if parts else schemas.empty(schemas.ROLLOUTS)
    if not _complete(table, prompts, params.n):
        folder = store.table_uri(ASSET, keys[0]).rsplit("/", 1)[0]
        raise RuntimeError(
            f"the rollout shards in {folder} hold {table.height} rows, expected {prompts.height} prompts x "
            f"{params.n} samples, each (prompt_id, sample_idx) once; delete that shard folder and rerun"
        )
    store.write_table(ASSET, category, table, schemas.ROLLOUTS)
    manifest = pl.DataFrame(
        [
            {
                "category": category,
                "fingerprint": fingerprint,
                "policy_id": policy_id,
                "engine": engine.name,
                "samples_per_prompt": params.n,
                "temperatures": temperatures,
                "top_p": params.top_p,
                "max_new_tokens": params.max_new_tokens,
                "seed": params.seed,
                "shard_prompts": shard_prompts,
                "shards": keys,
                "prompt_ids": prompts["prompt_id"].to_list(),
                "rows": table.height,
            }
        ],
        schema=schemas.ROLLOUT_MANIFEST,
    )
    store.write_table(ASSET, manifest_key(category), manifest, schemas.ROLLOUT_MANIFEST)
    reused = tuple(i for i in range(len(keys)) if i not in shards)
    return ShardedRollouts(table, manifest, reused, tuple(missing), generated_tokens, generate_seconds)


def _complete(table: pl.DataFrame, prompts: pl.DataFrame, n: int) -> bool:
    """Every prompt exactly n times, with sample_idx 0..n-1 (else a shard was damaged or mixed in)."""
    indices = pl.DataFrame({"sample_idx": range(n)}, schema={"sample_idx": pl.Int32})
    expected = prompts.select("prompt_id").join(indices, how="cross")
    got = table.select("prompt_id", "sample_idx")
    unexpected = got.join(expected, on=["prompt_id", "sample_idx"], how="anti").height
    return got.height == expected.height and not unexpected and got.is_unique().all()
