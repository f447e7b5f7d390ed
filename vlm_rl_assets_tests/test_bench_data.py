"""bench/data.py's generator and stages on a small table, so the benchmark keeps running the pipeline's code."""

import importlib.util
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from vlm_rl_assets.judging.contract import JudgeFailure, Verdict
from vlm_rl_assets.judging.rules import RuleJudge, text_answers
from vlm_rl_assets.judging.scene import object_vocabulary
from vlm_rl_assets.judging.scoring import judge_item, score_rollouts

BENCH = Path(__file__).parents[1] / "bench" / "data.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_data", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_rollouts_score_filter_and_pair(tmp_path):
    bench = load_bench()
    prompts, rollouts = bench.generate(100, seed=0)
    assert (prompts.height, rollouts.height) == (100, 800)
    assert set(prompts["answer_type"]) == {"number", "choice", "text", "structured", "open"}
    prompts.write_parquet(tmp_path / "prompts.parquet")
    rollouts.write_parquet(tmp_path / "rollouts.parquet")
    result = bench.run_stage("score", tmp_path)
    assert result["rows"] == 800 and result["pairs"] > 0 and result["on_policy_fraction"] == 1.0
    assert all(result["drops"][reason] > 0 for reason in ("kept", "too_short", "duplicate", "no_right_wrong_split"))
    scored = pl.read_parquet(tmp_path / "scored.parquet").join(prompts, on="prompt_id")
    by_type = scored.group_by("answer_type").agg(pl.col("correct").mean())["correct"]
    assert by_type.is_between(0.2, 0.8).all()  # every format is judged right and wrong, not all one way
    assert bench.run_stage("filter_pair", tmp_path)["pairs"] == result["pairs"]


@pytest.mark.parametrize("judge", [RuleJudge(), RuleJudge(strict_format=True)], ids=["rule", "strict_format"])
def test_scoring_distinct_inputs_once_gives_the_per_row_verdicts(judge):
    """score_rollouts judges each distinct input once; judging every row itself must give the same table."""
    prompts, rollouts = load_bench().generate(2_000, seed=1)
    unreadable = {"number": "many", "structured": "no fields"}  # ground truths the judge fails on: quarantined
    broken = prompts.filter(pl.col("answer_type").is_in(unreadable)).group_by("answer_type").head(3)
    prompts = prompts.with_columns(
        answer=pl.when(pl.col("prompt_id").is_in(broken["prompt_id"].implode()))
        .then(pl.col("answer_type").replace_strict(unreadable, default=None))
        .otherwise("answer")
    )
    result = score_rollouts(rollouts, prompts, judge)

    vocabulary, answers = object_vocabulary(prompts["objects"]), text_answers(prompts)
    rows = rollouts.join(prompts, on="prompt_id").iter_rows(named=True)
    items = [
        judge_item(row, f"{row['prompt_id']}/{row['sample_idx']}", row["response"], vocabulary, answers) for row in rows
    ]
    outcomes = judge.judge(items).outcomes
    verdicts = [o for o in outcomes if isinstance(o, Verdict)]
    expected = rollouts.filter(pl.Series([isinstance(o, Verdict) for o in outcomes])).with_columns(
        score=pl.Series([v.score for v in verdicts], dtype=pl.Float64),
        correct=pl.Series([v.correct for v in verdicts]),
        judge_reason=pl.Series([v.reason for v in verdicts]),
    )
    failures = [(item.key, o.reason) for item, o in zip(items, outcomes) if isinstance(o, JudgeFailure)]
    assert_frame_equal(result.scored, expected)
    assert result.failures == failures and len(failures) == 6 * 8
    codes = Counter(o.code for o in outcomes if isinstance(o, JudgeFailure))
    assert result.failure_counts == dict(sorted(codes.items()))
