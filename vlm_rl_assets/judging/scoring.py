"""Every rollout scored by a judge against its prompt's ground truth; what the judge could not score is returned
for quarantine, never scored 0."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, RolloutJudge, Verdict
from vlm_rl_assets.judging.rules import RuleJudge, text_answers
from vlm_rl_assets.judging.scene import object_vocabulary
from vlm_rl_assets.names import FILTERED_ROLLOUTS
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import Store


@dataclass(frozen=True)
class Scored:
    """The rollouts the judge scored, and those it could not: quarantine rows, never scored 0."""

    scored: pl.DataFrame  # rollouts + score, correct, judge_reason
    failures: list[tuple[str, str]]  # ("<prompt_id>/<sample_idx>", reason)
    failure_counts: dict[str, int]  # by failure code
    metrics: dict[str, float]  # the judge's own, e.g. the vlm judge's consistency


# With the judge's own settings and the category's vocabulary and text answers, all a pure judge's verdict depends on.
VERDICT_INPUTS = ("answer_type", "response", "answer", "choices", "objects")


def score_rollouts(rollouts: pl.DataFrame, prompts: pl.DataFrame, judge: RolloutJudge | None = None) -> Scored:
    """Judge every rollout against its prompt's ground truth (by rule unless another judge is given); `prompts` is
    the category's whole prompt table, whose objects are the open judge's vocabulary. A pure judge (`judge.pure`)
    judges each distinct input once, at its first row: a sampled policy's rollouts repeat (few phrasings, short
    answers), so a million rule verdicts take seconds. Other judges see every row."""
    judge = judge or RuleJudge()
    vocabulary, answers = object_vocabulary(prompts["objects"]), text_answers(prompts)
    joined = _with_truth(rollouts, prompts).with_row_index("row")
    first = pl.col("row").min().over(VERDICT_INPUTS) if judge.pure else pl.col("row")
    joined = joined.with_columns(first=first)
    judged = joined.filter(pl.col("row") == pl.col("first"))
    items = [
        judge_item(row, f"{row['prompt_id']}/{row['sample_idx']}", row["response"], vocabulary, answers)
        for row in judged.iter_rows(named=True)
    ]
    run = judge.judge(items)
    outcome_of_row = joined["first"].rank("dense") - 1  # the position of each row's first row among those judged

    def per_row(kind: type, attribute: str, dtype: pl.DataType) -> pl.Series:
        """An outcome attribute (None where the outcome is not a `kind`), for every row."""
        values = [getattr(o, attribute) if isinstance(o, kind) else None for o in run.outcomes]
        return pl.Series(values, dtype=dtype).gather(outcome_of_row)

    failed = per_row(JudgeFailure, "code", pl.String).is_not_null()
    scored = rollouts.with_columns(
        score=per_row(Verdict, "score", pl.Float64),
        correct=per_row(Verdict, "correct", pl.Boolean),
        judge_reason=per_row(Verdict, "reason", pl.String),
    ).filter(~failed)
    refused = joined.select(
        key=pl.format("{}/{}", "prompt_id", "sample_idx"),
        reason=per_row(JudgeFailure, "reason", pl.String),
        code=per_row(JudgeFailure, "code", pl.String),
    ).filter(failed)
    counts = refused.group_by("code").len().sort("code")
    failure_counts = dict(zip(counts["code"].to_list(), counts["len"].to_list()))
    return Scored(scored, list(refused.select("key", "reason").iter_rows()), failure_counts, run.metrics)


def _with_truth(rollouts: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Each rollout with its prompt's text, ground truth and images; a rollout of an unknown prompt is an error."""
    truth = prompts.select(
        "prompt_id", "prompt_text", "answer_type", "answer", "reference", "choices", "objects", "images"
    )
    joined = rollouts.join(truth, on="prompt_id", how="left", validate="m:1")
    orphans = joined.filter(pl.col("answer_type").is_null())
    if orphans.height:
        raise ValueError(
            f"{orphans.height} rollouts reference prompt ids absent from the prompt table "
            f"(e.g. {orphans['prompt_id'][0]}); rematerialize rollouts for this category"
        )
    return joined


def judge_item(
    prompt: Mapping[str, Any], key: str, response: str, vocabulary: frozenset[str], answers: frozenset[str]
) -> JudgeItem:
    """A response to `prompt` (a prompt-table row) as every judge sees it; `vocabulary` is its category's objects,
    `answers` its text answers."""
    return JudgeItem(
        key=key,
        group=prompt["prompt_id"],
        prompt_text=prompt["prompt_text"],
        response=response,
        answer_type=prompt["answer_type"],
        answer=prompt["answer"],
        reference=prompt["reference"],
        choices=prompt["choices"],
        objects=prompt["objects"],
        images=prompt["images"],
        vocabulary=vocabulary,
        answers=answers,
    )


def quarantine_failures(
    store: Store,
    category: str,
    judged: Scored,
    rows: int,
    judge: str,
    max_bad_fraction: float,
    warn: Callable[[str], None],
) -> None:
    """Write the rollouts the judge failed on to quarantine; fail the stage above `max_bad_fraction` of `rows`, or
    when the judge scored none of them (nothing is left to pair, whatever the threshold allows)."""
    refused = quarantine.rows(FILTERED_ROLLOUTS, category, judged.failures)
    store.write_table("quarantine", f"filtered_rollouts/{category}", refused, schemas.QUARANTINE)
    everything = rows > 0 and refused.height == rows
    if everything or refused.height / max(rows, 1) > max_bad_fraction:
        limit = "every one, so nothing is left to pair" if everything else f"above max_bad_fraction={max_bad_fraction}"
        raise ValueError(
            f"filtered_rollouts[{category}]: the {judge} judge failed on {refused.height} of {rows} rollouts "
            f"({judged.failure_counts}), {limit}. See {store.table_uri('quarantine', f'filtered_rollouts/{category}')}; "
            f"check judges.{judge} (endpoint, timeout_s, max_retries) or the ground truths named there"
            + ("" if everything else ", or raise max_bad_fraction")
        )
    if refused.height:
        warn(f"filtered_rollouts[{category}]: quarantined {refused.height} rollouts: {judged.failure_counts}")
