"""The promotion gate, fail-closed: a release candidate replaces the promoted policy only when the evidence for it is
complete and convincing. Anything missing (a category's verdicts, a delta, a NaN) is a reason not to promote, and
every reason is named, so the UI says what to fix.

The rule, on the paired deltas of the release report (`stats.paired_deltas`): the overall delta's 95% CI lies above
zero, and no category's CI lies wholly below `-max_category_loss`. Per category the CI, not the point estimate,
decides: on a bench of a few hundred prompts a category's point delta moves by about 5 points from noise alone.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl

from vlm_rl_assets.evaluation.stats import OVERALL
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.readable import points
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError, Store, round_key

BASE = "base"
CANDIDATE = "policy"  # the release report's name for the mixture policy
REPORTED_SPLIT = "bench"  # a report on dev, where settings were chosen, is optimistic: no evidence for promotion
SHOWN_PROMPTS = 5  # prompt ids quoted in a message about missing verdicts


def promotion_problems(
    verdicts: pl.DataFrame,
    deltas: pl.DataFrame,
    *,
    candidate: str,
    categories: Sequence[str],
    max_category_loss: float,
    evaluated_policy: str,
    current_policy: str,
    evaluated_split: str = REPORTED_SPLIT,
) -> list[str]:
    """Why the candidate must not be promoted (empty: promote). `evaluated_policy` is the fingerprint of the checkpoint
    the report benchmarked, `current_policy` that of the checkpoint that would be promoted: a report of another
    checkpoint is no evidence for this one. `evaluated_split` is the split the report measured."""
    problems = []
    if evaluated_split != REPORTED_SPLIT:
        problems.append(
            f"the release report measured the {evaluated_split!r} split (eval.split), where settings are chosen; "
            f"promotion needs a report on {REPORTED_SPLIT!r}: set eval.split: {REPORTED_SPLIT} and rematerialize it"
        )
    if evaluated_policy != current_policy:
        problems.append(
            f"the release report benchmarked policy {evaluated_policy}, but the policy checkpoint is now "
            f"{current_policy}: rematerialize release_report"
        )
    problems += _verdict_gaps(verdicts, candidate, categories)
    return problems + _delta_problems(deltas, categories, max_category_loss)


def _verdict_gaps(verdicts: pl.DataFrame, candidate: str, categories: Sequence[str]) -> list[str]:
    """Bench prompts that base and candidate did not both answer with a verdict: a delta over the rest is unpaired."""
    problems = []
    for category in categories:
        rows = verdicts.filter(pl.col("category") == category)
        if rows.is_empty():
            problems.append(f"category {category!r} has no benchmark verdicts")
            continue
        prompts = rows["prompt_id"].unique().sort()
        for model in (BASE, candidate):
            judged = rows.filter((pl.col("model") == model) & pl.col("correct").is_not_null())["prompt_id"]
            missing = prompts.filter(~prompts.is_in(judged.implode()))
            if missing.len():
                shown = ", ".join(missing.head(SHOWN_PROMPTS)) + (", ..." if missing.len() > SHOWN_PROMPTS else "")
                problems.append(
                    f"category {category!r}: {missing.len()} of {prompts.len()} bench prompts lack a {model} verdict "
                    f"({shown})"
                )
    return problems


def _delta_problems(deltas: pl.DataFrame, categories: Sequence[str], max_category_loss: float) -> list[str]:
    rows = {row["category"]: row for row in deltas.iter_rows(named=True)}
    problems = []
    for category in [*categories, OVERALL]:
        row = rows.get(category)
        name = "the overall delta" if category == OVERALL else f"category {category!r}"
        if row is None:
            problems.append(f"{name} is missing from the release report's deltas")
        elif not all(row[k] is not None and math.isfinite(row[k]) for k in ("delta", "ci_low", "ci_high")):
            problems.append(f"{name} is NaN or empty (delta {row['delta']}, CI [{row['ci_low']}, {row['ci_high']}])")
        elif category == OVERALL and row["ci_low"] <= 0:
            problems.append(f"overall delta {_interval(row)} does not lie above zero")
        elif category != OVERALL and row["ci_high"] < -max_category_loss:
            problems.append(
                f"category {category!r} loses accuracy: delta {_interval(row)} lies wholly below "
                f"-max_category_loss ({points(-max_category_loss)} points)"
            )
    return problems


def _interval(row: dict) -> str:
    """`+2.0 points, 95% CI [+0.2, +3.8]`."""
    return f"{points(row['delta'])} points, 95% CI [{points(row['ci_low'])}, {points(row['ci_high'])}]"


def promote(store: Store, checkpoint: Path, asset: str, key: str) -> str:
    """Publish a copy of `checkpoint` as `asset`/`key` (atomically: a failed copy leaves the promoted one in place);
    returns its URI. A copy, not a pointer: the candidate's own folder is overwritten by the next training run."""
    with store.staged_dir(asset, key, like=checkpoint) as staged:
        shutil.copytree(checkpoint, staged, dirs_exist_ok=True)
    return store.checkpoint_uri(asset, key)


class Gate(NamedTuple):
    problems: list[str]  # empty: promote
    deltas: pl.DataFrame  # as stored; empty when the report is missing
    policy_id: str | None  # the checkpoint the report benchmarked


def release_gate(
    store: Store,
    report: str,
    policy: tuple[str, str],
    categories: Sequence[str],
    max_category_loss: float,
    pipeline_round: int = 1,
) -> Gate:
    """The gate on what the `report` asset stored about the policy checkpoint `policy` (asset, key), in a round,
    fail-closed: a missing table or checkpoint is a problem."""
    asset, key = policy
    try:
        deltas = store.read_table(report, round_key("deltas", pipeline_round), schemas.BENCHMARK_DELTAS)
        verdicts = store.read_table(report, round_key("verdicts", pipeline_round), schemas.BENCHMARK_VERDICTS)
        candidate = store.read_table(report, round_key("candidate", pipeline_round), schemas.RELEASE_CANDIDATE)
        [(evaluated, split)] = candidate.select("policy_id", "split").rows()
        current = model_fingerprint(store.local_checkpoint(asset, round_key(key, pipeline_round)))
    except MissingUpstreamError as missing:
        return Gate([str(missing)], schemas.empty(schemas.BENCHMARK_DELTAS), None)
    problems = promotion_problems(
        verdicts,
        deltas,
        candidate=CANDIDATE,
        categories=categories,
        max_category_loss=max_category_loss,
        evaluated_policy=evaluated,
        current_policy=current,
        evaluated_split=split,
    )
    return Gate(problems, deltas, evaluated)
