"""The balanced mixture of every category's pairs that trains the release candidate."""

from __future__ import annotations

import polars as pl

from vlm_rl_assets.training.settings import TrainingSettings


def balanced_mixture(
    pairs_by_category: dict[str, pl.DataFrame], weights: dict[str, float], seed: int, max_repeat: float
) -> pl.DataFrame:
    """Each category in proportion to its weight, as many pairs per unit of weight as the richest category has: the
    scarcer categories' pairs repeat, at most `max_repeat` times (beyond it the richer categories are sampled down).

    Balancing keeps one large category from dominating the gradient; balancing *up* keeps every pair. Down-sampling
    to the scarcest category threw away up to 80% of the pairs and lost 3 to 4 points of the per-category runs'
    gain on dev (bench/RESULTS.md, "mixture"). Weight 0 leaves a category out.
    """
    active = {c: df for c, df in pairs_by_category.items() if weights.get(c, 0) > 0}
    if not active or any(df.is_empty() for df in active.values()):
        empty = sorted(c for c, df in active.items() if df.is_empty()) or sorted(pairs_by_category)
        raise ValueError(
            f"no pairs to mix for categories {empty}; materialize judged_pairs for them or set their mixture_weight to 0"
        )
    per_weight = [df.height / weights[c] for c, df in active.items()]
    scale = min(max(per_weight), max_repeat * min(per_weight))  # pairs per unit of weight
    parts = [_resized(df, max(1, round(scale * weights[c])), seed) for c, df in active.items()]
    return pl.concat(parts).sample(fraction=1.0, seed=seed, shuffle=True)


def _resized(pairs: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """`n` rows of `pairs`: whole copies while `n` exceeds it, then a sample of the rest, so every pair appears
    as often as any other, give or take one."""
    copies, rest = divmod(n, pairs.height)
    return pl.concat([pairs] * copies + [pairs.sample(n=rest, seed=seed, shuffle=True)])


def policy_mixture(
    tables: dict[str, pl.DataFrame], weights: dict[str, float], settings: TrainingSettings
) -> pl.DataFrame:
    """The policy's balanced mixture of the categories' `tables` (DPO: their pairs; GRPO: their train prompts) as
    `settings` draw it: seeded by `settings.seed`, a scarce category repeated at most `mixture.max_repeat` times."""
    return balanced_mixture(tables, weights, settings.seed, settings.mixture.max_repeat)
