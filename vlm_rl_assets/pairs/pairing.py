"""Preference pairs from a group's own samples: a top-scored response against a low-scored one.

By default both halves of every pair are the policy's own samples (on-policy). The prompt's reference
response as "chosen" (`chosen_source="ground_truth"`) is an ablation only: DPO then separates
off-policy text from the policy's own at once, its loss saturates and it learns a style shortcut.
A length-balanced option keeps only pairs whose halves have similar word counts, so DPO cannot
learn "longer (or shorter) wins" from them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import polars as pl

from vlm_rl_assets.names import JUDGED_PAIRS
from vlm_rl_assets.pairs.filtering import words
from vlm_rl_assets.store import schemas

ChosenSource = Literal["policy", "ground_truth"]
REFERENCE_IDX = -1  # chosen_idx of a pair whose chosen response is the prompt's reference
PAIR_DROP_REASONS = ("same_text", "below_margin", "length_unbalanced")  # in the order they apply


@dataclass(frozen=True)
class Paired:
    pairs: pl.DataFrame  # JUDGED_PAIRS rows
    dropped: dict[str, int]  # candidate pairs dropped, by PAIR_DROP_REASONS


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
    max_length_ratio: float | None = None,
    chosen_source: ChosenSource = "policy",
) -> Paired:
    """Candidate pairs per group; those whose halves have the same text, then those with a margin below
    `min_margin` (> 0, so chosen always scores higher), then (with `max_length_ratio`) those whose halves'
    word counts differ by more than that factor, are dropped and counted.

    policy: the group's kept samples in one order (best score first, ties by sample_idx); the i-th from
    the top against the i-th from the bottom, i < min(kept // 2, max_pairs_per_prompt), so the halves
    never overlap and no sample is paired with itself, even among tied scores. ground_truth (ablation):
    the reference response (score 1.0) against the i-th from the bottom, i < min(kept, max_pairs_per_prompt).
    """
    if min_margin <= 0:
        raise ValueError(f"min_margin must be > 0 so that chosen scores higher than rejected, got {min_margin}")
    candidates = _candidates(filtered.filter("kept"), prompts, max_pairs_per_prompt, chosen_source)
    candidates = candidates.with_columns(drop=_drop_reason(min_margin, max_length_ratio))
    counts = dict(candidates.group_by("drop").len().iter_rows())
    pairs = _pair_rows(
        candidates.filter(pl.col("drop").is_null()), prompts, beta, judge_name, on_policy=chosen_source == "policy"
    )
    return Paired(pairs, {reason: counts.get(reason, 0) for reason in PAIR_DROP_REASONS})


def _candidates(
    kept: pl.DataFrame, prompts: pl.DataFrame, max_pairs_per_prompt: int, chosen_source: ChosenSource
) -> pl.DataFrame:
    """Every candidate pair before any drop: prompt_id, rank, chosen*/rejected* (text, idx, score), margin."""
    rank = pl.int_range(pl.len()).over("prompt_id").alias("rank")
    ranked = kept.sort(["prompt_id", "score", "sample_idx"], descending=[False, True, False])
    worst = ranked.reverse().select(
        "prompt_id",
        rank,
        rejected=pl.col("response"),
        rejected_idx=pl.col("sample_idx"),
        rejected_score=pl.col("score"),
    )
    if chosen_source == "policy":
        limit = pl.min_horizontal(pl.len().over("prompt_id") // 2, max_pairs_per_prompt)
        best = ranked.select(
            "prompt_id", rank, chosen=pl.col("response"), chosen_idx=pl.col("sample_idx"), chosen_score=pl.col("score")
        )
        candidates = best.filter(pl.col("rank") < limit).join(worst, on=["prompt_id", "rank"])
    else:
        reference = prompts.select(
            "prompt_id",
            chosen=pl.col("reference"),
            chosen_idx=pl.lit(REFERENCE_IDX, dtype=pl.Int32),
            chosen_score=pl.lit(1.0, dtype=pl.Float64),
        )
        candidates = worst.filter(pl.col("rank") < max_pairs_per_prompt).join(reference, on="prompt_id", validate="m:1")
    return candidates.with_columns(margin=pl.col("chosen_score") - pl.col("rejected_score"))


def _drop_reason(min_margin: float, max_length_ratio: float | None) -> pl.Expr:
    """The first of PAIR_DROP_REASONS a candidate pair meets, or null for a pair that is kept."""
    below_margin = pl.col("margin") < min_margin
    chosen_words, rejected_words = words("chosen"), words("rejected")
    length_ratio = pl.max_horizontal(chosen_words, rejected_words) / pl.min_horizontal(
        chosen_words, rejected_words
    ).clip(1)
    unbalanced = length_ratio > max_length_ratio if max_length_ratio is not None else pl.lit(False)
    same_text = pl.col("chosen") == pl.col("rejected")
    return (
        pl.when(same_text)
        .then(pl.lit("same_text"))
        .when(below_margin)
        .then(pl.lit("below_margin"))
        .when(unbalanced)
        .then(pl.lit("length_unbalanced"))
    )


def _pair_rows(
    kept: pl.DataFrame, prompts: pl.DataFrame, beta: float, judge_name: str, *, on_policy: bool
) -> pl.DataFrame:
    """The kept candidates as JUDGED_PAIRS rows: the prompt's fields joined on, ids and training settings added."""
    pairs = kept.join(
        prompts.select("prompt_id", "category", "prompt_text", "images"), on="prompt_id", validate="m:1"
    ).sort("prompt_id", "rank")
    pairs = pairs.with_columns(
        pair_id=pl.Series(
            [pair_id(*key) for key in zip(pairs["prompt_id"], pairs["chosen_idx"], pairs["rejected_idx"])],
            dtype=pl.String,
        ),
        beta=pl.lit(beta, dtype=pl.Float64),
        judge=pl.lit(judge_name),
        on_policy=pl.lit(on_policy),
    )
    return schemas.check(pairs, schemas.JUDGED_PAIRS, JUDGED_PAIRS)
