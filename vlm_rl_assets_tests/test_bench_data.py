"""bench/data.py's generator and stages on a small table, so the benchmark keeps running the pipeline's code."""

import importlib.util
from pathlib import Path

import polars as pl

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
