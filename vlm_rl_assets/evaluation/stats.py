"""Uncertainty for benchmark numbers: bootstrap CIs, paired deltas and unbiased pass@k (the promotion gate that reads
them is `promotion.py`).

Bench splits are a few hundred prompts, so a point accuracy alone cannot tell a real gain from noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from vlm_rl_assets.store import schemas

OVERALL = "overall"


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap CI; the same seed gives the same interval, so reruns agree."""
    return _stratified_ci([np.asarray(values, dtype=float)], n_resamples, seed)


def paired_delta(
    candidate: Sequence[float],
    base: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[float, float, float]:
    """Candidate minus base with a 95% CI, resampling items (not models): both answered the same prompts, so
    the per-item difference cancels prompt difficulty and the interval is much tighter than two separate ones.
    With `groups` (each item's group), the mean over groups of each group's mean delta, items resampled within
    their group: every group weighs the same. A NaN on either side makes the delta NaN."""
    diff = np.asarray(candidate, dtype=float) - np.asarray(base, dtype=float)
    if groups is None:
        return _stratified_ci([diff], n_resamples, seed)
    labels = np.asarray(groups)
    return _stratified_ci([diff[labels == g] for g in sorted(set(labels))], n_resamples, seed)


def _stratified_ci(groups: list[np.ndarray], n_resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean over groups of each group's mean, with a CI from resampling within each group."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([g.mean() for g in groups]))
    draws = np.mean([g[rng.integers(0, len(g), (n_resamples, len(g)))].mean(axis=1) for g in groups], axis=0)
    low, high = np.percentile(draws, [2.5, 97.5])
    return point, float(low), float(high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), as a product
    so large n does not overflow the binomials."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_curve(correct_counts: Sequence[int], n: int) -> list[float]:
    """Mean pass@k over prompts for k = 1..n."""
    return [float(np.mean([pass_at_k(n, c, k) for c in correct_counts])) for k in range(1, n + 1)]


def paired_deltas(verdicts: pl.DataFrame, candidate: str, n_resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Greedy-accuracy delta of `candidate` over base per category, and OVERALL (mean over categories, prompts
    resampled within each category so every category weighs the same), each with a 95% paired CI. A prompt without
    both verdicts makes its category's delta (and the overall one) NaN, never a delta over the rest: the promotion
    gate refuses NaN."""
    wide = verdicts.with_columns(pl.col("correct").cast(pl.Float64)).pivot(
        on="model", index=["category", "prompt_id"], values="correct"
    )
    rows = [
        (c, *paired_delta(g[candidate].to_numpy(), g["base"].to_numpy(), n_resamples, seed), g.height)
        for (c,), g in sorted(wide.group_by("category"), key=lambda item: item[0])
    ]
    overall = paired_delta(
        wide[candidate].to_numpy(), wide["base"].to_numpy(), n_resamples, seed, groups=wide["category"].to_list()
    )
    rows.append((OVERALL, *overall, wide.height))
    return pl.DataFrame(rows, schema=schemas.BENCHMARK_DELTAS, orient="row")
