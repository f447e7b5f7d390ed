"""Reference log-probs are computed once per (reference, pair content) and read back on retrain."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from vlm_rl_assets.dpo.reference_cache import TABLE, with_reference_logps
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets.training.libraries import KEYED_LIBRARIES
from vlm_rl_assets_tests.helpers import pretend_upgraded, retemplated_copy


def _pairs(n: int, category: str = "colour") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "pair_id": [f"{category}-{i}" for i in range(n)],
            "category": [category] * n,
            "prompt_text": [f"{category} q{i}" for i in range(n)],
            "images": [[f"file://img{i}.png"] for i in range(n)],
            "chosen": ["yes"] * n,
            "rejected": ["no"] * n,
        }
    )


def test_computes_once_then_reads_back(tmp_path: Path) -> None:
    store, asked = LocalStore(tmp_path), []

    def compute(rows: list[int]) -> list[tuple[float, float]]:
        asked.append(rows)
        return [(-float(i), -10.0 - i) for i in rows]

    pairs = pl.concat([_pairs(3), _pairs(2, "count")])
    first, computed = with_reference_logps(store, "ref-a", pairs, compute)
    assert computed == 5 and first["ref_chosen_logps"].to_list() == [0.0, -1.0, -2.0, -3.0, -4.0]
    assert store.read_table(TABLE, "count", schemas.REFERENCE_LOGPS).height == 2  # stored beside each category's pairs

    again, computed = with_reference_logps(store, "ref-a", pairs.reverse(), compute)
    assert computed == 0 and again["ref_rejected_logps"].to_list() == first["ref_rejected_logps"].reverse().to_list()

    edited = pairs.with_columns(
        chosen=pl.when(pl.col("pair_id") == "colour-1").then(pl.lit("yes!")).otherwise("chosen")
    )
    _, computed = with_reference_logps(store, "ref-a", edited, compute)
    assert computed == 1 and asked[-1] == [1]  # edited content is a new pair

    _, computed = with_reference_logps(store, "ref-b", pairs, compute)
    assert computed == 5  # another reference model: nothing reused
    assert store.read_table(TABLE, "colour", schemas.REFERENCE_LOGPS).height == 3 + 1 + 3


def _constant(rows: list[int]) -> list[tuple[float, float]]:
    return [(-1.0, -2.0)] * len(rows)


def test_an_edited_chat_template_recomputes(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with_reference_logps(store, model_fingerprint(tiny_vlm_dir), _pairs(3), _constant)
    edited = retemplated_copy(tiny_vlm_dir, tmp_path / "edited")  # same weights, other prompt tokens
    _, computed = with_reference_logps(store, model_fingerprint(edited), _pairs(3), _constant)
    assert computed == 3


@pytest.mark.parametrize("library", KEYED_LIBRARIES)
def test_a_library_upgrade_recomputes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str) -> None:
    store = LocalStore(tmp_path)
    with_reference_logps(store, "ref-a", _pairs(3), _constant)
    pretend_upgraded(monkeypatch, library)
    _, computed = with_reference_logps(store, "ref-a", _pairs(3), _constant)
    assert computed == 3
