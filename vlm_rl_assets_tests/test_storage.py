import polars as pl
import pytest
from PIL import Image

from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import MissingUpstreamError, png_bytes
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table


def test_images_are_stored_once_by_content(tmp_path):
    store = LocalStore(tmp_path)
    data = png_bytes(Image.new("RGB", (8, 8), "red"))
    assert store.put_image(data) == store.put_image(data)
    assert len(list((tmp_path / "images").iterdir())) == 1
    assert store.load_image(store.put_image(data)).getpixel((0, 0)) == (255, 0, 0)


def test_tables_round_trip_and_missing_upstream_says_what_is_missing(tmp_path):
    store = LocalStore(tmp_path)
    table = prompt_table({"a": ("number", "1")})
    store.write_table("prompt_mixture", "count", table, schemas.PROMPTS)
    assert store.read_table("prompt_mixture", "count", schemas.PROMPTS).equals(table)
    assert not list((tmp_path / "prompt_mixture").glob(".*tmp"))
    with pytest.raises(MissingUpstreamError, match="rollouts for 'count' not found .* Materialize it first") as missing:
        store.read_table("rollouts", "count", schemas.ROLLOUTS)
    assert (missing.value.asset, missing.value.key) == ("rollouts", "count")  # the assets add the command


def test_a_table_missing_a_column_is_refused(tmp_path):
    with pytest.raises(schemas.SchemaError, match=r"lacks columns \['answer'\]"):
        LocalStore(tmp_path).write_table(
            "prompt_mixture", "c", prompt_table({"a": ("number", "1")}).drop("answer"), schemas.PROMPTS
        )


def test_staged_dir_replaces_only_on_success(tmp_path):
    store = LocalStore(tmp_path)
    with store.staged_dir("ckpt", "c") as out:
        (out / "config.json").write_text("1")
    with pytest.raises(RuntimeError):
        with store.staged_dir("ckpt", "c") as out:
            (out / "config.json").write_text("2")
            raise RuntimeError("killed")
    assert (store.local_checkpoint("ckpt", "c") / "config.json").read_text() == "1"
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["c"]


def test_undecodable_and_missing_images_become_counted_quarantine_rows(tmp_path):
    store = LocalStore(tmp_path)
    good = store.put_image(png_bytes(Image.new("RGB", (8, 8))))
    (tmp_path / "images" / "bad.png").write_bytes(b"not a png")
    prompts = prompt_table({"good": ("number", "1"), "bad": ("number", "1"), "gone": ("number", "1")}).with_columns(
        images=pl.Series([[good], ["images/bad.png"], ["images/gone.png"]])
    )
    loaded, images, refused = quarantine.load_prompt_images(store, prompts, asset="rollouts", category="count")
    assert loaded["prompt_id"].to_list() == ["good"] and len(images) == 1
    reasons = dict(zip(refused["key"], refused["reason"]))
    assert reasons["bad"].startswith("image_undecodable") and reasons["gone"].startswith("image_missing")


def test_has_and_missing_checkpoint_say_what_is_missing(tmp_path):
    store = LocalStore(tmp_path)
    assert not store.has_checkpoint("policy_checkpoint", "mixture") and not store.has_table("prompt_mixture", "c")
    with pytest.raises(MissingUpstreamError, match="policy_checkpoint checkpoint 'mixture' not found") as missing:
        store.local_checkpoint("policy_checkpoint", "mixture")
    assert (missing.value.asset, missing.value.key) == ("policy_checkpoint", "mixture")  # the assets add the command
    with store.staged_dir("policy_checkpoint", "mixture") as out:
        (out / "config.json").write_text("{}")
    assert store.has_checkpoint("policy_checkpoint", "mixture")


def test_copy_folders_copies_what_the_target_lacks_whole_and_keeps_what_it_has(tmp_path):
    source, target = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    for fingerprint in ("f1", "f2"):
        source.local_path(f"rollouts/color/shards/{fingerprint}").mkdir(parents=True)
        source.local_path(f"rollouts/color/shards/{fingerprint}/00000.parquet").write_text(fingerprint)
    target.local_path("rollouts/color/shards/f2").mkdir(parents=True)
    source.copy_folders(target, "rollouts", "*/shards/*")
    assert (tmp_path / "b/rollouts/color/shards/f1/00000.parquet").read_text() == "f1"
    assert not (tmp_path / "b/rollouts/color/shards/f2/00000.parquet").exists()  # present already: left as it is
    assert not list((tmp_path / "b/rollouts/color/shards").glob(".*"))
    assert source.subroot("experiments/e/v") == str(tmp_path / "a/experiments/e/v")
