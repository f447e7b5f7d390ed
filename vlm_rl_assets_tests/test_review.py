"""The review pages (reviewing/): the stratified sample, the self-contained page, the human labels store and its
bad input, the labelling server's routes, and `calibration_labels: human` in the judge_calibration check."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from PIL import Image
from starlette.testclient import TestClient

from vlm_rl_assets.assets.graph import ALL_ASSETS
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.pairs.filtering import filter_rollouts
from vlm_rl_assets.pairs.pairing import make_pairs
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.reviewing.labels import LabelsFileError, current_labels, read_human_labels, save_label
from vlm_rl_assets.reviewing.pages import Labelling, ReviewTables, latest_tables, page_path, review_page, write_page
from vlm_rl_assets.reviewing.sample import PAIRED, stratified_sample
from vlm_rl_assets.reviewing.server import review_app
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
GROUPS = {  # the count category's rollouts: number answers, judged by rule
    "a": ["Answer: 2", "Answer: 3", "<script>alert(1)</script> Answer: 3"],  # right and wrong: paired
    "b": ["Answer: 1", "Answer: 1"],  # a duplicate, and nothing wrong left: no pair
    "c": ["Answer: 5", "Answer: 6"],  # all wrong
}
ANSWERS = {"a": ("number", "2"), "b": ("number", "1"), "c": ("number", "4"), "d": ("number", "7")}


@pytest.fixture
def store(tmp_path) -> LocalStore:
    """The count category through judged_pairs, by the real stage functions, with one image per prompt (prompt c's
    missing from the store) and two quarantined rows."""
    store = LocalStore(tmp_path / "store")
    prompts = prompt_table(ANSWERS)
    uris = [store.put_image(png_bytes(Image.new("RGB", (8, 8), colour))) for colour in ("red", "green", "blue", "white")]
    uris[2] = "images/gone.png"
    prompts = prompts.with_columns(images=pl.Series([[u] for u in uris], dtype=pl.List(pl.String)))
    store.write_table("prompt_mixture", "count", prompts, schemas.PROMPTS)
    rollouts = rollout_table(GROUPS)
    store.write_table("rollouts", "count", rollouts, schemas.ROLLOUTS)
    filtered = filter_rollouts(score_rollouts(rollouts, prompts).scored, min_words=1)
    store.write_table("filtered_rollouts", "count", filtered, schemas.FILTERED_ROLLOUTS)
    pairs = make_pairs(filtered, prompts, min_margin=0.5, max_pairs_per_prompt=4, beta=0.1, judge_name="rule").pairs
    store.write_table("judged_pairs", "count", pairs, schemas.JUDGED_PAIRS)
    refused = quarantine.rows("rollouts", "count", [("d", "image_undecodable: <b>bad</b>")])
    store.write_table("quarantine", "rollouts/count", refused, schemas.QUARANTINE)
    judge_failed = quarantine.rows("filtered_rollouts", "count", [("a/9", "timeout: no answer")])
    store.write_table("quarantine", "filtered_rollouts/count", judge_failed, schemas.QUARANTINE)
    return store


def item(store: LocalStore, prompt_id: str, sample_idx: int) -> dict:
    rows = store.read_table("filtered_rollouts", "count", schemas.FILTERED_ROLLOUTS)
    return rows.filter((pl.col("prompt_id") == prompt_id) & (pl.col("sample_idx") == sample_idx)).row(0, named=True)


def test_the_sample_draws_from_every_stratum_and_shows_each_prompt_once(store):
    tables = latest_tables(store, "count")
    sample = stratified_sample(tables.rollouts, tables.pairs, per_stratum=1, seed="s")
    assert [(s.name, s.total) for s in sample] == [
        (PAIRED, 1),
        ("dropped: duplicate", 1),
        ("dropped: no_right_wrong_split", 2),  # b's first sample and all of c
    ]
    shown = [p for s in sample for p in s.prompt_ids]
    assert shown[:2] == ["a", "b"] and shown[2] == "c" and len(set(shown)) == 3  # b is not drawn twice
    assert stratified_sample(tables.rollouts, tables.pairs, 1, "s") == sample  # the same page for the same tables


def test_the_page_is_self_contained_and_shows_every_part(store):
    uri = write_page(store, latest_tables(store, "count"))
    assert uri == str(store.root / page_path("count"))
    page = Path(uri).read_text()
    assert page.count('src="data:image/png;base64,') == 2  # a and b; c's image is gone, d was never rolled out
    assert "images/gone.png: image missing from the store" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<link" not in page  # nothing from a network
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # escaped
    assert "<b>bad</b>" not in page and "image_undecodable: &lt;b&gt;bad&lt;/b&gt;" in page  # quarantine, escaped
    assert "timeout: no answer" in page
    assert 'class="chosen"><b>chosen</b> 1.000<pre>Answer: 2</pre>' in page
    assert 'class="rejected"><b>rejected</b> 0.000' in page
    for shown in ("paired: 1 of 1 prompts", "dropped: duplicate", "no_right_wrong_split", "Ground truth"):
        assert shown in page
    assert "<td>pairs</td><td>1</td>" in page and "<td>quarantined</td><td>2</td>" in page
    assert "<script>" not in page.replace("&lt;script&gt;", "")  # the stored page has no labelling script


def test_a_page_before_judging_shows_rollouts_without_verdicts(store):
    from vlm_rl_assets.reviewing.pages import read_tables

    page = review_page(read_tables(store, "count", "rollouts"), store.read_bytes)
    assert "not judged yet: 3 of 3 prompts" in page and "timeout: no answer" not in page  # judge failures come later
    assert "image_undecodable" in page and "<td>pairs</td>" not in page


def test_a_double_submit_replaces_the_label_and_counts_it(store):
    first = save_label(store, "count", item(store, "a", 1), False, "ann", datetime(2026, 1, 1, tzinfo=UTC))
    second = save_label(store, "count", item(store, "a", 1), True, "bob")
    save_label(store, "count", item(store, "c", 0), False, "ann")
    labels = read_human_labels(store, "count")
    assert labels.height == 2 and (first["replaced"], second["replaced"]) == (0, 1)
    again = labels.filter(pl.col("prompt_id") == "a").row(0, named=True)
    assert (again["label"], again["who"], again["verdict"], again["response"]) == (True, "bob", False, "Answer: 3")


def test_a_garbage_labels_file_is_named_and_never_written_over(store):
    save_label(store, "count", item(store, "a", 0), True, "ann")
    path = Path(store.table_uri("labels", "count"))
    path.write_bytes(b"prompt_id,label\na,yes\n")  # edited by hand
    with pytest.raises(LabelsFileError, match=rf"{re.escape(str(path))} cannot be read.*nothing has been written over"):
        save_label(store, "count", item(store, "a", 1), True, "ann")
    assert path.read_bytes() == b"prompt_id,label\na,yes\n"
    blanked = {**save_label(store.__class__(store.root / "other"), "count", item(store, "a", 0), True, "ann"), "label": None}
    pl.DataFrame([blanked], schema=schemas.HUMAN_LABELS).write_parquet(path)  # a hand edit that blanked a label
    with pytest.raises(LabelsFileError, match=r"rows without \['label'\]"):
        save_label(store, "count", item(store, "a", 1), True, "ann")


def test_labels_of_regenerated_rollouts_are_stale(store):
    save_label(store, "count", item(store, "a", 0), True, "ann")
    save_label(store, "count", item(store, "c", 1), False, "ann")
    rollouts = store.read_table("rollouts", "count", schemas.ROLLOUTS)
    regenerated = rollouts.with_columns(
        response=pl.when(pl.col("prompt_id") == "c").then(pl.lit("Answer: 4")).otherwise("response")
    )
    fresh, stale = current_labels(read_human_labels(store, "count"), regenerated)
    assert fresh.rows() == [("a", 0, "Answer: 2", True)] and stale["prompt_id"].to_list() == ["c"]
