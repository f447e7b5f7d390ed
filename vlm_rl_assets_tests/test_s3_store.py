"""The store on an s3:// root, against moto's S3 server on loopback (a real HTTP endpoint, via env)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from PIL import Image

from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError, png_bytes
from vlm_rl_assets.store.costs import latest_costs
from vlm_rl_assets.store.open import open_store
from vlm_rl_assets.store.s3 import UnsafeManifestError
from vlm_rl_assets_tests.graphs import CATEGORY_ASSETS, everything
from vlm_rl_assets_tests.helpers import S3_BUCKET, prompt_table, s3_keys

TWO_CATEGORIES = Path(__file__).parent / "data" / "two_categories.yaml"
BUCKET = S3_BUCKET  # the `s3` fixture (conftest.py) creates it


def test_tables_round_trip_schema_checked_and_missing_says_what_is_missing(s3, tmp_path):
    store = open_store(f"s3://{BUCKET}/tables", tmp_path)
    table = prompt_table({"a": ("number", "1")})
    uri = store.write_table("prompt_mixture", "count", table, schemas.PROMPTS)
    assert uri == store.table_uri("prompt_mixture", "count") == f"s3://{BUCKET}/tables/prompt_mixture/count.parquet"
    assert store.has_table("prompt_mixture", "count") and not store.has_table("rollouts", "count")
    assert store.read_table("prompt_mixture", "count", schemas.PROMPTS).equals(table)
    assert s3_keys(s3, "tables/") == ["tables/prompt_mixture/count.parquet"]
    store.write_table("prompt_mixture", "count/more", table, schemas.PROMPTS)
    assert store.table_keys("prompt_mixture") == ["count", "count/more"] and store.table_keys("rollouts") == []
    with pytest.raises(schemas.SchemaError, match=r"lacks columns \['answer'\]"):
        store.write_table("prompt_mixture", "c", table.drop("answer"), schemas.PROMPTS)
    missing = r"rollouts for 'count' not found at s3://pipeline/tables/rollouts/count.parquet. Materialize it first"
    with pytest.raises(MissingUpstreamError, match=missing) as raised:
        store.read_table("rollouts", "count", schemas.ROLLOUTS)
    assert (raised.value.asset, raised.value.key) == ("rollouts", "count")  # what the steps' command is made from


def test_images_are_stored_once_under_root_relative_uris(s3, tmp_path):
    store = open_store(f"s3://{BUCKET}/images_test", tmp_path)
    data = png_bytes(Image.new("RGB", (8, 8), "red"))
    uri = store.put_image(data)
    assert uri == store.put_image(data) and uri.startswith("images/")
    assert s3_keys(s3, "images_test/") == [f"images_test/{uri}"]
    assert store.load_image(uri).getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(FileNotFoundError) as missing:
        store.load_image("images/gone.png")
    assert missing.value.filename == f"s3://{BUCKET}/images_test/images/gone.png"


def test_a_variant_root_nests_under_the_prefix_and_nothing_is_copied_to_or_from_s3(s3, tmp_path):
    store = open_store(f"s3://{BUCKET}/main/", tmp_path)
    assert store.subroot("experiments/e/v") == f"s3://{BUCKET}/main/experiments/e/v"
    assert store.local_path("experiments/e/v") is None
    local = open_store(tmp_path / "local")
    local.local_path("rollouts/color/shards/f1").mkdir(parents=True)
    local.copy_folders(store, "rollouts", "*/shards/*")
    store.copy_folders(local, "rollouts", "*/shards/*")
    assert s3_keys(s3, "main/") == []


def test_checkpoint_is_published_only_on_success_and_downloaded_once(s3, tmp_path):
    writer = open_store(f"s3://{BUCKET}/ckpt_test", tmp_path / "writer_cache")
    with pytest.raises(RuntimeError):
        with writer.staged_dir("dpo_checkpoint", "c") as out:
            (out / "config.json").write_text("1")
            raise RuntimeError("killed")
    assert s3_keys(s3, "ckpt_test/") == [] and not writer.has_checkpoint("dpo_checkpoint", "c")
    assert not list((tmp_path / "writer_cache").rglob("config.json"))  # the staging folder is gone too
    with pytest.raises(MissingUpstreamError, match="dpo_checkpoint checkpoint 'c' not found at s3://") as missing:
        writer.local_checkpoint("dpo_checkpoint", "c")
    assert (missing.value.asset, missing.value.key) == ("dpo_checkpoint", "c")

    for version in ("1", "2"):
        with writer.staged_dir("dpo_checkpoint", "c") as out:
            (out / "config.json").write_text(version)
            (out / "sub").mkdir()
            (out / "sub" / "weights.bin").write_bytes(b"w" * 10)
    stored = s3_keys(s3, "ckpt_test/")
    assert "ckpt_test/dpo_checkpoint/c/_COMPLETE" in stored and len(stored) == 3  # the superseded version is gone

    reader = open_store(f"s3://{BUCKET}/ckpt_test", tmp_path / "reader_cache")
    folder = reader.local_checkpoint("dpo_checkpoint", "c")
    assert (folder / "config.json").read_text() == "2" and (folder / "sub" / "weights.bin").read_bytes() == b"w" * 10
    assert reader.local_checkpoint("dpo_checkpoint", "c") == folder  # cached: one download per version
    assert (writer.local_checkpoint("dpo_checkpoint", "c") / "config.json").read_text() == "2"


def test_checkpoint_without_its_manifest_is_absent(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="partial/dpo_checkpoint/c/v1/config.json", Body=b"{}")  # a killed upload
    store = open_store(f"s3://{BUCKET}/partial", tmp_path)
    assert not store.has_checkpoint("dpo_checkpoint", "c")
    with pytest.raises(MissingUpstreamError):
        store.local_checkpoint("dpo_checkpoint", "c")


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("files", "../../escape.txt"),
        ("files", "/tmp/escape.txt"),
        ("files", "sub/../../../escape.txt"),
        ("files", "sub\\..\\escape.txt"),
        ("files", "./config.json"),
        ("files", ""),
        ("version", "../elsewhere"),
    ],
)
def test_a_manifest_naming_paths_outside_the_checkpoint_is_refused_before_any_download(s3, tmp_path, field, name):
    writer = open_store(f"s3://{BUCKET}/forged", tmp_path / "writer_cache")
    with writer.staged_dir("dpo_checkpoint", "c") as out:
        (out / "config.json").write_text("{}")
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="forged/dpo_checkpoint/c/_COMPLETE")["Body"].read())
    manifest[field] = [*manifest["files"], name] if field == "files" else name
    s3.put_object(Bucket=BUCKET, Key="forged/dpo_checkpoint/c/_COMPLETE", Body=json.dumps(manifest).encode())
    reader = open_store(f"s3://{BUCKET}/forged", tmp_path / "cache" / "reader")
    with pytest.raises(UnsafeManifestError, match=f"names {field.removesuffix('s')} {re.escape(repr(name))}"):
        reader.local_checkpoint("dpo_checkpoint", "c")
    assert not (tmp_path / "cache").exists()  # refused before anything touched the disk


def test_one_category_runs_end_to_end_with_the_root_on_s3(s3, tmp_path):
    config = yaml.safe_load(TWO_CATEGORIES.read_text())
    config["categories"] = {"color": config["categories"]["color"]}
    config["storage"] = {"cache_dir": str(tmp_path / "cache")}
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump(config))
    root = f"s3://{BUCKET}/run"
    resources = {"pipeline": PipelineResource.from_file(str(config_path), root)}
    with dg.instance_for_test() as instance:
        for selection, partition in ((["base_model"], None), (CATEGORY_ASSETS, "color")):
            run = dg.materialize(
                everything(resources),
                selection=selection,
                partition_key=partition,
                instance=instance,
                resources=resources,
            )
            assert run.success
    stored = s3_keys(s3, "run/")
    for asset in ("prompt_mixture", "rollouts", "filtered_rollouts", "judged_pairs", "benchmark_scores"):
        assert f"run/{asset}/color.parquet" in stored
    for checkpoint in ("base_model/embedded", "dpo_checkpoint/color"):
        assert f"run/{checkpoint}/_COMPLETE" in stored
        assert any(key.startswith(f"run/{checkpoint}/") and key.endswith("/config.json") for key in stored)
    assert any(key.startswith("run/images/") for key in stored)
    store = open_store(root, tmp_path / "cache")
    scores = store.read_table("benchmark_scores", "color", schemas.BENCHMARK_SCORES)
    assert set(scores["model"]) == {"base", "dpo"}
    costs = latest_costs(store)  # each asset's cost row, listed and read back from S3
    assert set(costs["asset"]) == {"base_model", *(asset.key.to_user_string() for asset in CATEGORY_ASSETS)}
    dpo = costs.filter(pl.col("asset") == "dpo_checkpoint").row(0, named=True)
    assert dpo["trained_tokens"] > 0 and dpo["store_bytes_written"] > 2**20  # the checkpoint's upload (MBs) counted
