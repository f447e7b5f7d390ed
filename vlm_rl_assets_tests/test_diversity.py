"""Diversity of rollout groups: distinct-n, unique fraction, embedding distance, histogram."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_rl_assets.rollouts import diversity
from vlm_rl_assets.rollouts.diversity import distinct_n, group_diversity, mean_cosine_distance, unique_fraction
from vlm_rl_assets_tests.helpers import rollout_table


def test_distinct_1_counts_unique_words_over_all_words() -> None:
    # words: the red circle | the red square  -> 6 in all, {the, red, circle, square} unique
    assert distinct_n(["the red circle", "The red square"], 1) == pytest.approx(4 / 6)


def test_distinct_2_never_spans_two_responses() -> None:
    # bigrams: (a b) (b c) | (c a) -> 3 in all, 3 unique; no (c c) across the boundary
    assert distinct_n(["a b c", "c a"], 2) == pytest.approx(3 / 3)
    # (a b) (b a) (a b) | (a b) -> 4 in all, 2 unique
    assert distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)


def test_identical_responses_halve_distinct_n() -> None:
    assert distinct_n(["red circle", "red circle"], 1) == pytest.approx(0.5)
    assert distinct_n(["red circle", "red circle"], 2) == pytest.approx(0.5)


def test_distinct_n_is_none_without_any_n_gram() -> None:
    assert distinct_n(["red", "blue", ""], 2) is None
    assert distinct_n([""], 1) is None


def test_unique_fraction() -> None:
    assert unique_fraction(["a", "a", "b", "c"]) == pytest.approx(3 / 4)


def test_mean_cosine_distance() -> None:
    # pairs: (x, x) 0, (x, y) 1, (x, y) 1 -> mean 2/3; lengths do not matter
    assert mean_cosine_distance(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])) == pytest.approx(2 / 3)
    assert mean_cosine_distance(np.array([[1.0, 0.0]])) is None


def test_group_diversity_per_prompt_with_and_without_embeddings() -> None:
    rollouts = rollout_table({"p1": ["red circle", "red circle"], "p2": ["a b", "c d", "e f"]})
    plain = group_diversity(rollouts)
    assert plain["prompt_id"].to_list() == ["p1", "p2"]
    assert plain["samples"].to_list() == [2, 3]
    assert plain["distinct_1"].to_list() == pytest.approx([0.5, 1.0])
    assert plain["unique_fraction"].to_list() == pytest.approx([0.5, 1.0])
    assert plain["embedding_distance"].null_count() == 2
    assert diversity.measured(plain) == ["distinct_1", "distinct_2", "unique_fraction"]

    embedded: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        embedded.append(texts)
        return np.array([[1.0, 0.0] if t.startswith("red") else [0.0, 1.0] for t in texts])

    with_embeddings = group_diversity(rollouts, embed)
    assert embedded == [["red circle", "a b", "c d", "e f"]]  # each distinct response once
    assert with_embeddings["embedding_distance"].to_list() == pytest.approx([0.0, 0.0])


def test_histogram_counts_groups_per_band() -> None:
    rollouts = rollout_table({"p1": ["x", "x", "x", "x"], "p2": ["x", "y", "x", "y"], "p3": ["a", "b", "c", "d"]})
    table = diversity.histogram(group_diversity(rollouts))
    assert table.columns == ["band", "distinct_1", "unique_fraction"]  # one-word responses: no bigrams
    assert table["band"].to_list() == ["0.0–0.2", "0.2–0.4", "0.4–0.6", "0.6–0.8", "0.8–1.0"]
    assert table["unique_fraction"].to_list() == [0, 1, 1, 0, 1]  # 1/4, 2/4, 4/4


def test_no_embedder_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diversity, "EMBEDDING_PACKAGE", "not_an_installed_package_xyz")
    assert diversity.load_embedder("cpu") is None
