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

from vlm_rl_assets.names import ROLLOUTS
from vlm_rl_assets.rollouts.engine import Engine, SamplingParams
from vlm_rl_assets.rollouts.sampling import derive_seed, sample_rollouts
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store, spec_key


@dataclass(frozen=True)
class ShardedRollouts:
    table: pl.DataFrame  # every shard, in prompt order
    manifest: pl.DataFrame  # one ROLLOUT_MANIFEST row
    reused: tuple[int, ...]  # shard indices found from an earlier run
    generated: tuple[int, ...]  # shard indices sampled by this run
    generated_tokens: int
    generate_seconds: float


def shard_key(key: str, fingerprint: str, index: int) -> str:
    return f"{key}/shards/{fingerprint}/{index:05d}"


def manifest_key(key: str) -> str:
    return f"{key}/manifest"


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
    key: str,
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
    """Sample the shards the store lacks, then write `rollouts/<key>` (`key`: the round's key) and its manifest.

    `progress(done, total)` is called after each sampled shard, counting only the shards this run
    samples; `log` hears once, before sampling, how many shards an earlier run left.
    """
    plan = _plan(key, prompts, params, temperatures, policy_id, engine.name, shard_prompts)
    missing = [i for i, shard in enumerate(plan.shard_keys) if not store.has_table(ROLLOUTS, shard)]
    if log is not None:
        earlier = len(plan.shard_keys) - len(missing)
        log(
            f"rollouts[{key}]: {earlier} of {len(plan.shard_keys)} shards done earlier ({plan.fingerprint}), "
            "sampling the rest"
        )
    begin = time.monotonic()
    shards = _sample_shards(engine, store, plan, missing, prompts, images, params, policy_id, progress)
    generate_seconds = time.monotonic() - begin
    generated_tokens = sum(int(shard["n_tokens"].sum()) for shard in shards.values())
    table = _assemble_table(store, plan, shards, prompts, params.n)
    store.write_table(ROLLOUTS, key, table, schemas.ROLLOUTS)
    manifest = _manifest(plan, policy_id, engine.name, params, prompts, table.height)
    store.write_table(ROLLOUTS, manifest_key(key), manifest, schemas.ROLLOUT_MANIFEST)
    reused = tuple(i for i in range(len(plan.shard_keys)) if i not in shards)
    return ShardedRollouts(table, manifest, reused, tuple(missing), generated_tokens, generate_seconds)


@dataclass(frozen=True)
class _Plan:
    """How a run's prompts are cut into shards, and where each shard is stored."""

    key: str
    fingerprint: str
    shard_prompts: int
    temperatures: list[float]
    shard_keys: list[str]  # shard i holds prompts[i * shard_prompts : (i + 1) * shard_prompts]


def _plan(
    key: str,
    prompts: pl.DataFrame,
    params: SamplingParams,
    temperatures: Sequence[float],
    policy_id: str,
    engine_name: str,
    shard_prompts: int,
) -> _Plan:
    if shard_prompts < 1:
        raise ValueError(f"shard_prompts must be >= 1, got {shard_prompts}")
    temperatures = list(temperatures) or [params.temperature]
    fingerprint = rollout_fingerprint(prompts, params, temperatures, policy_id, engine_name, shard_prompts)
    count = len(range(0, prompts.height, shard_prompts))
    return _Plan(key, fingerprint, shard_prompts, temperatures, [shard_key(key, fingerprint, i) for i in range(count)])


def _sample_shards(
    engine: Engine,
    store: Store,
    plan: _Plan,
    indices: Sequence[int],
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    params: SamplingParams,
    policy_id: str,
    progress: Callable[[int, int], None] | None,
) -> dict[int, pl.DataFrame]:
    """Sample and store shards `indices`, shard i with a seed derived from the base seed and i."""
    shards: dict[int, pl.DataFrame] = {}
    for done, i in enumerate(indices, 1):
        start = i * plan.shard_prompts
        shards[i] = sample_rollouts(
            engine,
            prompts.slice(start, plan.shard_prompts),
            images[start : start + plan.shard_prompts],
            replace(params, seed=derive_seed(params.seed, i)),
            policy_id,
            plan.temperatures,
        )
        store.write_table(ROLLOUTS, plan.shard_keys[i], shards[i], schemas.ROLLOUTS)
        if progress is not None:
            progress(done, len(indices))
    return shards


def _assemble_table(
    store: Store, plan: _Plan, sampled: dict[int, pl.DataFrame], prompts: pl.DataFrame, n: int
) -> pl.DataFrame:
    """Every shard in prompt order (this run's from memory, the rest from the store), checked complete."""
    parts = [
        sampled[i] if i in sampled else store.read_table(ROLLOUTS, shard, schemas.ROLLOUTS)
        for i, shard in enumerate(plan.shard_keys)
    ]
    table = pl.concat(parts) if parts else schemas.empty(schemas.ROLLOUTS)
    if not _complete(table, prompts, n):
        folder = store.table_uri(ROLLOUTS, plan.shard_keys[0]).rsplit("/", 1)[0]
        raise RuntimeError(
            f"the rollout shards in {folder} hold {table.height} rows, expected {prompts.height} prompts x "
            f"{n} samples, each (prompt_id, sample_idx) once; delete that shard folder and rerun"
        )
    return table


def _manifest(
    plan: _Plan, policy_id: str, engine_name: str, params: SamplingParams, prompts: pl.DataFrame, rows: int
) -> pl.DataFrame:
    row = {
        "category": plan.key,
        "fingerprint": plan.fingerprint,
        "policy_id": policy_id,
        "engine": engine_name,
        "samples_per_prompt": params.n,
        "temperatures": plan.temperatures,
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "seed": params.seed,
        "shard_prompts": plan.shard_prompts,
        "shards": plan.shard_keys,
        "prompt_ids": prompts["prompt_id"].to_list(),
        "rows": rows,
    }
    return pl.DataFrame([row], schema=schemas.ROLLOUT_MANIFEST)


def _complete(table: pl.DataFrame, prompts: pl.DataFrame, n: int) -> bool:
    """Every prompt exactly n times, with sample_idx 0..n-1 (else a shard was damaged or mixed in)."""
    indices = pl.DataFrame({"sample_idx": range(n)}, schema={"sample_idx": pl.Int32})
    expected = prompts.select("prompt_id").join(indices, how="cross")
    got = table.select("prompt_id", "sample_idx")
    unexpected = got.join(expected, on=["prompt_id", "sample_idx"], how="anti").height
    return got.height == expected.height and not unexpected and got.is_unique().all()
