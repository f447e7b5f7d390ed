"""Preference pairs from a group's own samples: a top-scored response against a low-scored one.

Both halves of every pair are the policy's own samples (on-policy); the ground truth is never the
chosen response, since DPO then saturates at once and learns a shortcut.
"""

from __future__ import annotations

import hashlib

import polars as pl

from vlm_rl_assets.core import schemas


def pair_id(prompt_id: str, chosen_idx: int, rejected_idx: int) -> str:
    return hashlib.sha256(f"{prompt_id}/{chosen_idx}/{rejected_idx}".encode()).hexdigest()[:16]


def make_pairs(
    filtered: pl.DataFrame,
    prompts: pl.DataFrame,
    *,
    min_margin: float,
    max_pairs_per_prompt: int,
    beta: float,
    judge_name: str,
) -> pl.DataFrame:
    """Pair the i-th best kept sample with the i-th worst while their score margin is at least `min_margin`."""
    kept = filtered.filter("kept")
    best = kept.sort(["prompt_id", "score", "sample_idx"], descending=[False, True, False])
    worst = kept.sort(["prompt_id", "score", "sample_idx"], descending=[False, False, False])
    rank = pl.int_range(pl.len()).over("prompt_id").alias("rank")
    chosen = best.select("prompt_id", rank, chosen=pl.col("response"), chosen_idx=pl.col("sample_idx"), chosen_score=pl.col("score"))
    rejected = worst.select(
        "prompt_id", rank, rejected=pl.col("response"), rejected_idx=pl.col("sample_idx"), rejected_score=pl.col("score")
    )
    pairs = (
        chosen.join(rejected, on=["prompt_id", "rank"])
        .with_columns(margin=pl.col("chosen_score") - pl.col("rejected_score"))
        .filter((pl.col("rank") < max_pairs_per_prompt) & (pl.col("margin") >= min_margin))
        .join(prompts.select("prompt_id", "category", "prompt_text", "images"), on="prompt_id", validate="m:1")
    )
    pairs = pairs.with_columns(
        pair_id=pl.struct("prompt_id", "chosen_idx", "rejected_idx").map_elements(
            lambda r: pair_id(r["prompt_id"], r["chosen_idx"], r["rejected_idx"]), return_dtype=pl.String
        ),
        beta=pl.lit(beta, dtype=pl.Float64),
        judge=pl.lit(judge_name),
        on_policy=pl.lit(True),
    )
    return schemas.check(pairs.sort("prompt_id", "rank"), schemas.JUDGED_PAIRS, "judged_pairs")
