"""Which prompts a review page shows: a few from every stratum (paired, kept without a pair, dropped for each
reason), so the rare outcomes are looked at as often as the common ones."""

from __future__ import annotations

import random
from dataclasses import dataclass

import polars as pl

from vlm_rl_assets.pairs.filtering import DROP_REASONS

PAIRED, KEPT, UNJUDGED = "paired", "kept, no pair", "not judged yet"


@dataclass(frozen=True)
class Stratum:
    name: str
    total: int  # prompts in the stratum
    prompt_ids: list[str]  # the sampled ones, not already shown under an earlier stratum


def strata(rollouts: pl.DataFrame, pairs: pl.DataFrame | None) -> dict[str, list[str]]:
    """Every prompt of `rollouts` under each stratum it belongs to (a paired prompt with a too-short sample is in
    both), in a fixed order; `rollouts` without verdicts (kept all null) are one stratum, not judged yet."""
    prompt_ids = rollouts["prompt_id"].unique().sort().to_list()
    if rollouts["kept"].is_null().all():
        return {UNJUDGED: prompt_ids}
    paired = set(pairs["prompt_id"]) if pairs is not None else set()
    kept = set(rollouts.filter(pl.col("kept"))["prompt_id"])
    found = {PAIRED: [p for p in prompt_ids if p in paired], KEPT: [p for p in prompt_ids if p in kept - paired]}
    for reason in DROP_REASONS:
        found[f"dropped: {reason}"] = (
            rollouts.filter(pl.col("drop_reason") == reason)["prompt_id"].unique().sort().to_list()
        )
    return {name: ids for name, ids in found.items() if ids}


def stratified_sample(rollouts: pl.DataFrame, pairs: pl.DataFrame | None, per_stratum: int, seed: str) -> list[Stratum]:
    """Up to `per_stratum` prompts of each stratum, drawn with a seeded generator (the same page for the same tables),
    each prompt shown once: under the first stratum that draws it."""
    rng = random.Random(seed)
    shown: set[str] = set()
    sample = []
    for name, ids in strata(rollouts, pairs).items():
        fresh = [p for p in ids if p not in shown]
        drawn = sorted(rng.sample(fresh, min(per_stratum, len(fresh))))
        shown.update(drawn)
        sample.append(Stratum(name, len(ids), drawn))
    return sample
