"""The balanced mixture of every category's pairs that trains the release candidate."""

from __future__ import annotations

import polars as pl


def balanced_mixture(pairs_by_category: dict[str, pl.DataFrame], weights: dict[str, float], seed: int) -> pl.DataFrame:
    """Sample each category in proportion to its weight, as many pairs as the scarcest category allows.

    Balancing by down-sampling keeps one large category from dominating the gradient (once the
    mixture is right, every benchmark rises together); weight 0 leaves a category out.
    """
    active = {c: df for c, df in pairs_by_category.items() if weights.get(c, 0) > 0}
    if not active or any(df.is_empty() for df in active.values()):
        empty = sorted(c for c, df in active.items() if df.is_empty()) or sorted(pairs_by_category)
        raise ValueError(f"no pairs to mix for categories {empty}; materialize judged_pairs for them or set their mixture_weight to 0")
    scale = min(df.height / weights[c] for c, df in active.items())  # pairs per unit of weight
    parts = [df.sample(n=max(1, int(scale * weights[c])), seed=seed, shuffle=True) for c, df in active.items()]
    return pl.concat(parts).sample(fraction=1.0, seed=seed, shuffle=True)
