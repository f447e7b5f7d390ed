"""Bootstrap CIs, paired deltas, unbiased pass@k and benchmark summaries, on exact values."""

import math

import polars as pl
import pytest

from vlm_rl_assets.evaluation.benchmarks import summarize
from vlm_rl_assets.evaluation.stats import (
    OVERALL,
    bootstrap_ci,
    paired_delta,
    paired_deltas,
    pass_at_k,
    pass_at_k_curve,
)
from vlm_rl_assets.store import schemas
from vlm_rl_assets_tests.helpers import verdicts


def test_pass_at_k_matches_the_closed_form():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 5) == 1.0 and pass_at_k(5, 2, 4) == 1.0  # fewer than k wrong: some draw is correct
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - math.comb(7, 4) / math.comb(10, 4))
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)  # the product form does not overflow
    assert pass_at_k_curve([0, 2], 2) == pytest.approx([0.5, 0.5])


def test_bootstrap_ci_contains_the_mean_and_is_deterministic_by_seed():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    mean, low, high = bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(0.6) and low < mean < high and 0 <= low and high <= 1
    assert bootstrap_ci(values, seed=3) == (mean, low, high)
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0, 1.0)


def test_paired_delta_of_identical_vectors_is_zero():
    assert paired_delta([1, 0, 1, 1], [1, 0, 1, 1]) == (0.0, 0.0, 0.0)
    assert paired_delta([1, 1, 1, 1], [0, 0, 0, 0]) == (1.0, 1.0, 1.0)


def test_paired_deltas_per_category_and_overall_as_their_mean():
    table = pl.concat(
        [
            verdicts("a", "base", [False, False, True, True]),
            verdicts("a", "policy", [True, True, True, True]),
            verdicts("b", "base", [True, False]),
            verdicts("b", "policy", [True, False]),
        ]
    )
    deltas = schemas.check(paired_deltas(table, "policy"), schemas.BENCHMARK_DELTAS, "deltas")
    rows = {r["category"]: r for r in deltas.iter_rows(named=True)}
    assert (rows["a"]["delta"], rows["b"]["delta"], rows[OVERALL]["delta"]) == (0.5, 0.0, 0.25)
    assert (rows["b"]["ci_low"], rows["b"]["ci_high"]) == (0.0, 0.0) and rows[OVERALL]["n"] == 6
    assert rows[OVERALL]["ci_low"] <= 0.25 <= rows[OVERALL]["ci_high"]


def test_summarize_gives_accuracy_with_ci_and_pass_at_k_rows():
    greedy = verdicts("a", "base", [True, False, True, True]).drop("model")
    sampled = pl.DataFrame({"prompt_id": ["a0", "a1", "a2", "a3"], "category": "a", "n_correct": [2, 0, 4, 1]})
    scores = schemas.check(summarize(greedy, sampled, 4, "base"), schemas.BENCHMARK_SCORES, "scores")
    by_metric = {r["metric"]: r for r in scores.iter_rows(named=True)}
    assert set(by_metric) == {"accuracy", "mean_score", "pass@1", "pass@2", "pass@3", "pass@4"}
    assert (
        by_metric["accuracy"]["value"] == 0.75
        and by_metric["accuracy"]["ci_low"] <= 0.75 <= by_metric["accuracy"]["ci_high"]
    )
    assert by_metric["pass@1"]["value"] == pytest.approx(7 / 16) and by_metric["pass@4"]["value"] == 0.75
    assert by_metric["pass@4"]["ci_low"] is None and (scores["n"] == 4).all()
