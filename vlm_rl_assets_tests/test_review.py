"""The review pages (reviewing/): the stratified sample, the self-contained page, the human labels store and its
bad input, the labelling server's routes, and `calibration_labels: human` in the judge_calibration check."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import polars as pl
import pytest
import yaml
from PIL import Image
from starlette.testclient import TestClient

from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.pairs.filtering import filter_rollouts
from vlm_rl_assets.pairs.pairing import make_pairs
from vlm_rl_assets.reviewing.labels import LabelsFileError, current_labels, read_human_labels, save_label
from vlm_rl_assets.reviewing.pages import latest_tables, page_path, read_tables, review_page, write_page
from vlm_rl_assets.reviewing.sample import PAIRED, stratified_sample
from vlm_rl_assets.reviewing.server import review_app
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
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
    uris = [
        store.put_image(png_bytes(Image.new("RGB", (8, 8), colour))) for colour in ("red", "green", "blue", "white")
    ]
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
    blanked = {
        **save_label(store.__class__(store.root / "other"), "count", item(store, "a", 0), True, "ann"),
        "label": None,
    }
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


@pytest.fixture
def client(store):
    with TestClient(review_app(store, ["count", "color"], who="ann")) as client:
        yield client


def test_the_server_saves_labels_given_on_its_page(client, store):
    page = client.get("/review/count")
    assert page.status_code == 200 and 'data-endpoint="/labels/count"' in page.text and 'value="ann"' in page.text
    saved = client.post("/labels/count", json={"prompt_id": "a", "sample_idx": 1, "label": True, "who": "bob"})
    assert saved.json() == {"label": True, "replaced": 0, "labels": 1}
    again = client.post("/labels/count", json={"prompt_id": "a", "sample_idx": 1, "label": False, "who": ""})
    assert again.json() == {"label": False, "replaced": 1, "labels": 1}  # a double submit replaces
    assert read_human_labels(store, "count").select("label", "who", "verdict").rows() == [(False, "ann", False)]
    assert "<td>human labels</td><td>1</td>" in client.get("/review/count").text
    assert 'class="human-label wrong">wrong</span>' in client.get("/review/count").text
    assert client.get("/").status_code == 200 and 'href="/review/count"' in client.get("/").text


@pytest.mark.parametrize(
    "path",
    [
        "/review/nope",
        "/review/..",
        "/review/%2e%2e",
        "/review/..%2F..%2Fetc%2Fpasswd",
        "/review/%2Fetc%2Fpasswd",
        "/review//etc/passwd",
        "/review/count%2F..%2F..%2Flabels",
        "/review/%252e%252e%252fetc",
    ],
)
def test_the_server_refuses_unknown_categories_and_paths(store, tmp_path, path):
    app = review_app(store, ["count", "color"], who="ann")
    assert raw_request(app, "GET", path) == 404
    assert raw_request(app, "POST", path.replace("/review/", "/labels/")) == 404
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"] and not store.has_table("labels", "count")


def raw_request(app, method: str, path: str) -> int:
    """The status of `path` sent as it is (an HTTP client would resolve `..` first), decoded as uvicorn decodes it."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "root_path": "",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    body = b'{"prompt_id": "a", "sample_idx": 0, "label": true, "who": "x"}'
    sent = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_the_server_refuses_bad_labels_and_keeps_an_unreadable_file(client, store, tmp_path):
    assert client.post("/review/count").status_code == 405
    json_header = {"content-type": "application/json"}
    assert (
        "the body must be JSON"
        in client.post("/labels/count", content=b"{not json", headers=json_header).json()["error"]
    )
    label = b'{"prompt_id": "a", "sample_idx": 1, "label": true, "who": "x"}'
    cross_site = client.post("/labels/count", content=label, headers={"content-type": "text/plain"})
    assert cross_site.status_code == 415  # a form or simple fetch from another site cannot label
    bad = client.post("/labels/count", json={"prompt_id": "a", "sample_idx": "0", "label": "yes", "who": "x"})
    assert bad.status_code == 400 and "['sample_idx', 'label']" in bad.json()["error"]
    gone = client.post("/labels/count", json={"prompt_id": "a", "sample_idx": 7, "label": True, "who": "x"})
    assert gone.status_code == 404 and "no rollout a #7" in gone.json()["error"]
    assert client.get("/review/color").status_code == 404  # configured, but nothing materialized: says what to run
    assert "Materialize it first" in client.get("/review/color").text
    path = Path(store.table_uri("labels", "count"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    refused = client.post("/labels/count", json={"prompt_id": "a", "sample_idx": 0, "label": True, "who": "x"})
    assert refused.status_code == 500 and str(path) in refused.json()["error"] and path.read_bytes() == b"garbage"
    assert client.get("/review/count").status_code == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing written beside the store


def test_the_server_refuses_a_body_over_64_kb_and_a_name_too_long_to_be_one(client, store):
    label = {"prompt_id": "a", "sample_idx": 1, "label": True}
    huge = client.post("/labels/count", json=label | {"who": "x" * 2_000_000})
    assert huge.status_code == 413 and "at most 64 KB" in huge.json()["error"]
    chunks = (b"x" * 65536 for _ in range(2))  # no Content-Length: refused once 64 KB have been read
    streamed = client.post("/labels/count", content=chunks, headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    long_name = client.post("/labels/count", json=label | {"who": "x" * 201})
    assert long_name.status_code == 400 and "at most 200" in long_name.json()["error"]
    assert not store.has_table("labels", "count")


def run_human_calibration(store: LocalStore, tmp_path: Path) -> tuple[dg.AssetCheckEvaluation, set[str]]:
    """filtered_rollouts, its judge_calibration check and judged_pairs of `count`, labels: human (3 needed)."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["categories"]["count"] |= {"calibration_labels": "human", "calibration_min_labels": 3, "min_response_words": 1}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    resources = {"pipeline": PipelineResource.from_file(str(tmp_path / "pipeline.yaml"), str(store.root))}
    selection = ["filtered_rollouts", "judged_pairs"]
    result = dg.materialize(
        everything(resources), selection=selection, partition_key="count", resources=resources, raise_on_error=False
    )
    (check,) = result.get_asset_check_evaluations()
    return check, {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_human_labels_gate_judged_pairs(store, tmp_path):
    check, materialized = run_human_calibration(store, tmp_path)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and materialized == {"filtered_rollouts"}
    assert "0 human labels of current rollouts" in check.description and "Label 3 more" in check.description
    assert check.metadata["labels_needed"].value == 3

    save_label(store, "count", item(store, "a", 0), True, "ann")  # the judge says right too
    save_label(store, "count", item(store, "a", 1), True, "ann")  # relabelled below
    save_label(store, "count", item(store, "a", 1), False, "ann")
    save_label(store, "count", item(store, "c", 0), True, "ann")  # the judge says wrong
    save_label(store, "count", {**item(store, "b", 0), "response": "an older rollout"}, True, "ann")  # stale
    check, materialized = run_human_calibration(store, tmp_path)
    assert not check.passed and materialized == {"filtered_rollouts"}
    values = {k: v.value for k, v in check.metadata.items()}
    assert {k: values[k] for k in ("n", "f1", "true_pos", "true_neg", "false_neg")} == {
        "n": 3,
        "f1": 0.667,
        "true_pos": 1,
        "true_neg": 1,
        "false_neg": 1,
    }
    assert (values["human_labels"], values["labels_stale"], values["labels_replaced"]) == (3, 1, 1)
    assert "an older rollout" in values["stale_labels"]

    save_label(store, "count", item(store, "c", 0), False, "ann")  # a second look: the last label wins
    check, materialized = run_human_calibration(store, tmp_path)
    assert check.passed and check.metadata["f1"].value == 1.0 and materialized == {"filtered_rollouts", "judged_pairs"}


def test_the_cli_writes_pages_and_exports_label_studio_tasks(store, tmp_path, capsys):
    from vlm_rl_assets.review import main

    out = tmp_path / "tasks.json"
    main(["--config", str(CONFIG), "--root", str(store.root), "export-labelstudio", "count", str(out)])
    tasks = json.loads(out.read_text())
    assert [(t["data"]["prompt_id"], t["data"]["sample_idx"]) for t in tasks] == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("b", 0),
        ("b", 1),
        ("c", 0),
        ("c", 1),
    ]
    first = tasks[0]["data"]
    assert first["image"].startswith("data:image/png;base64,") and tasks[-1]["data"]["image"] == ""  # c's is gone
    assert (first["ground_truth"], first["response"], first["verdict"], first["stratum"]) == (
        "2",
        "Answer: 2",
        "right",
        PAIRED,
    )
    assert '<Choices name="label" toName="response"' in capsys.readouterr().out
    main(["--config", str(CONFIG), "--root", str(store.root), "write", "count"])
    assert (store.root / page_path("count")).read_text().count("data:image/png") == 2
    with pytest.raises(KeyError, match="unknown category 'nope'"):
        main(["--config", str(CONFIG), "--root", str(store.root), "write", "nope"])


def test_metadata_tables_cut_long_cells():
    from vlm_rl_assets.orchestration.ui import markdown_table

    table = markdown_table(pl.DataFrame({"chosen": ["a|b\n" + "x" * 100], "score": [1.0]}), max_chars=10).value
    assert table.splitlines()[2] == "| a\\|b xxxxx… | 1.000 |"
