"""Judge every rollout and keep the groups worth learning from, with a reason for every drop.

A group (the N samples of one prompt) teaches DPO something only if it holds both right and wrong
responses; short and duplicate responses are dropped first so they cannot fake that split, and a
group whose samples are mostly copies of each other (the policy collapsed on that prompt) can be
dropped whole. Every step is a polars expression: a million rollouts filter in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from vlm_rl_assets.store import schemas
from vlm_rl_assets.judging.rules import Verdict
from vlm_rl_assets.judging.contract import JudgeItem, RolloutJudge, RuleJudge

DROP_REASONS = ("too_short", "duplicate", "low_diversity", "no_right_wrong_split")  # in the order they apply
WORD = r"[^\s\x1c-\x1f]+"  # what str.split() splits on, as a regex (Python also splits on \x1c-\x1f)


def words(column: str) -> pl.Expr:
    """Words in `column`, exactly `len(text.split())` (prompts.word_count), vectorized."""
    return pl.col(column).str.count_matches(WORD).cast(pl.Int64)


@dataclass(frozen=True)
class Scored:
    """The rollouts the judge scored, and those it could not: quarantine rows, never scored 0."""

    scored: pl.DataFrame  # rollouts + score, correct, judge_reason
    failures: list[tuple[str, str]]  # ("<prompt_id>/<sample_idx>", reason)
    failure_counts: dict[str, int]  # by failure code
    metrics: dict[str, float]  # the judge's own, e.g. the vlm judge's consistency


def score_rollouts(rollouts: pl.DataFrame, prompts: pl.DataFrame, judge: RolloutJudge | None = None) -> Scored:
    """Judge every rollout against its prompt's ground truth (by rule unless another judge is given)."""
    judge = judge or RuleJudge()
    truth = prompts.select("prompt_id", "prompt_text", "answer_type", "answer", "reference", "choices", "objects", "images")
    joined = rollouts.join(truth, on="prompt_id", how="left", validate="m:1")
    orphans = joined.filter(pl.col("answer_type").is_null())
    if orphans.height:
        raise ValueError(
            f"{orphans.height} rollouts reference prompt ids absent from the prompt table "
            f"(e.g. {orphans['prompt_id'][0]}); rematerialize rollouts for this category"
        )
    items = [
        JudgeItem(
            key=f"{row['prompt_id']}/{row['sample_idx']}",
            group=row["prompt_id"],
            prompt_text=row["prompt_text"],
            response=row["response"],
            answer_type=row["answer_type"],
            answer=row["answer"],
            reference=row["reference"],
            choices=row["choices"],
            objects=row["objects"],
            images=row["images"],
        )
        for row in joined.iter_rows(named=True)
    ]
    run = judge.judge(items)
    judged = [isinstance(outcome, Verdict) for outcome in run.outcomes]
    verdicts = [outcome for outcome in run.outcomes if isinstance(outcome, Verdict)]
    scored = rollouts.filter(pl.Series(judged, dtype=pl.Boolean)).with_columns(
        score=pl.Series([v.score for v in verdicts], dtype=pl.Float64),
        correct=pl.Series([v.correct for v in verdicts], dtype=pl.Boolean),
        judge_reason=pl.Series([v.reason for v in verdicts], dtype=pl.String),
    )
    return Scored(scored, run.failures(items), run.failure_counts(), run.metrics)


def filter_rollouts(scored: pl.DataFrame, min_words: int, min_group_diversity: float = 0.0) -> pl.DataFrame:
    """Mark every scored rollout kept or dropped; the first reason that applies is recorded.

    Row reasons first (too_short, duplicate: the first of identical responses in a group stays), then
    group reasons over the rows left: low_diversity when the group's unique fraction (distinct
    responses / responses, over all its samples, as `diversity.unique_fraction` and the rollouts
    asset report it) is below `min_group_diversity`, then no_right_wrong_split.
    """
    too_short = words("response") < min_words
    duplicate = pl.col("sample_idx") != pl.col("sample_idx").min().over("prompt_id", "response")
    low_diversity = (pl.col("response").n_unique() / pl.len()).over("prompt_id") < min_group_diversity
    marked = scored.sort("prompt_id", "sample_idx").with_columns(
        drop_reason=pl.when(too_short)
        .then(pl.lit("too_short"))
        .when(duplicate)
        .then(pl.lit("duplicate"))
        .when(low_diversity)
        .then(pl.lit("low_diversity"))
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
