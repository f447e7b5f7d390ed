"""Score each rollout by rule and keep the groups worth learning from, with a reason for every drop.

A group (the N samples of one prompt) teaches DPO something only if it holds both right and wrong
responses; short and duplicate responses are dropped first so they cannot fake that split.
"""

from __future__ import annotations

import polars as pl

from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.judges import judge
from vlm_rl_assets.core.prompts import word_count

DROP_REASONS = ("too_short", "duplicate", "no_right_wrong_split")


def score_rollouts(rollouts: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Add `score` and `correct` to every rollout by judging it against its prompt's ground truth."""
    truth = prompts.select("prompt_id", "answer_type", "answer", "objects")
    joined = rollouts.join(truth, on="prompt_id", how="left", validate="m:1")
    orphans = joined.filter(pl.col("answer_type").is_null())
    if orphans.height:
        raise ValueError(
            f"{orphans.height} rollouts reference prompt ids absent from the prompt table "
            f"(e.g. {orphans['prompt_id'][0]}); rematerialize rollouts for this category"
        )
    verdicts = [
        judge(row["answer_type"], row["response"], row["answer"], row["objects"])
        for row in joined.select("answer_type", "response", "answer", "objects").iter_rows(named=True)
    ]
    return rollouts.with_columns(
        score=pl.Series([v.score for v in verdicts], dtype=pl.Float64),
        correct=pl.Series([v.correct for v in verdicts], dtype=pl.Boolean),
    )


def filter_rollouts(scored: pl.DataFrame, min_words: int) -> pl.DataFrame:
    """Mark every scored rollout kept or dropped; the first reason that applies is recorded."""
    too_short = pl.col("response").map_elements(word_count, return_dtype=pl.Int64) < min_words
    duplicate = pl.col("sample_idx") != pl.col("sample_idx").min().over("prompt_id", "response")  # keep the first
    marked = scored.sort("prompt_id", "sample_idx").with_columns(
        drop_reason=pl.when(too_short).then(pl.lit("too_short")).when(duplicate).then(pl.lit("duplicate"))
    )
    survivors = pl.col("drop_reason").is_null()
    any_right = (survivors & pl.col("correct")).any().over("prompt_id")
    any_wrong = (survivors & ~pl.col("correct")).any().over("prompt_id")
    has_split = any_right & any_wrong
    marked = marked.with_columns(
        drop_reason=pl.when(survivors & ~has_split).then(pl.lit("no_right_wrong_split")).otherwise(pl.col("drop_reason"))
    )
    marked = marked.with_columns(kept=pl.col("drop_reason").is_null())
    return schemas.check(marked, schemas.FILTERED_ROLLOUTS, "filtered_rollouts")


def drop_counts(filtered: pl.DataFrame) -> dict[str, int]:
    counts = dict(filtered.group_by("drop_reason").len().iter_rows())
    return {"kept": counts.get(None, 0), **{reason: counts.get(reason, 0) for reason in DROP_REASONS}}
