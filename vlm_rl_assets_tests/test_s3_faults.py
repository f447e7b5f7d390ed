"""The S3 store under the object store's faults: a fault proxy (s3_fault_proxy.py) between boto3 and moto.

Throttling, 5xx and dropped connections are retried (by botocore, then by Dagster through `retry_transient`); no reader
sees half a table or checkpoint; a failed checkpoint upload leaves the previous checkpoint, no incomplete multipart
upload (billed storage on real S3) and none of its own objects.
"""

from __future__ import annotations

import os

import dagster as dg
import pytest
from PIL import Image

from vlm_rl_assets.orchestration.retries import TRANSIENT_ERRORS, retry_transient
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.store.open import open_store
from vlm_rl_assets.store.s3 import S3Reader
from vlm_rl_assets_tests.helpers import S3_BUCKET, prompt_table, s3_keys
from vlm_rl_assets_tests.s3_fault_proxy import Action, Fault, FaultProxy

MULTIPART_BYTES = 9 * 2**20  # over boto3's 8 MiB multipart threshold: two parts
SECOND_PART = r"[?&]partNumber=2(&|$)"
TABLE = prompt_table({"a": ("number", "1"), "b": ("number", "2")})


@pytest.fixture
def proxy(s3, monkeypatch):
    """The fault proxy in front of the `s3` fixture's moto server; clients made from here on go through it."""
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"]) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


@pytest.fixture
def two_attempts(monkeypatch):
    """botocore gives up after 2 attempts (1 retry), so a test exhausts its retries in a second."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")


def incomplete_uploads(client, prefix: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix).get("Uploads", [])


def stage_checkpoint(store, files: dict[str, bytes]) -> None:
    with store.staged_dir("dpo_checkpoint", "c") as out:
        for name, data in files.items():
            (out / name).write_bytes(data)


@pytest.mark.parametrize("action", [Action.SLOW_DOWN, Action.INTERNAL_ERROR, Action.RESET, Action.RESET_AFTER])
def test_tables_and_images_are_written_through_throttling_and_resets(proxy, tmp_path, action):
    store = open_store(f"s3://{S3_BUCKET}/put_{action.name}", tmp_path)
    # 3 failed attempts: as many as botocore's default standard mode makes
    proxy.arm(Fault("PUT", r"\.parquet$", action, times=3), Fault("PUT", r"/images/", action))
    store.write_table("prompt_mixture", "c", TABLE, schemas.PROMPTS)
    image = store.put_image(png_bytes(Image.new("RGB", (8, 8), "blue")))
    assert proxy.hit(action) == 4
    assert store.read_table("prompt_mixture", "c", schemas.PROMPTS).equals(TABLE)
    assert store.load_image(image).getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("reader", ["store", "s3_reader"])
def test_a_table_whose_response_is_cut_mid_body_is_read_again_whole(s3, proxy, tmp_path, reader):
    store = open_store(f"s3://{S3_BUCKET}/cut_{reader}", tmp_path)
    uri = store.write_table("prompt_mixture", "c", TABLE, schemas.PROMPTS)
    proxy.arm(Fault("GET", r"/prompt_mixture/c\.parquet$", Action.CUT_BODY, times=2))
    if reader == "store":
        assert store.read_table("prompt_mixture", "c", schemas.PROMPTS).equals(TABLE)
    else:
        data = S3Reader().read(uri)
        assert data == s3.get_object(Bucket=S3_BUCKET, Key=f"cut_{reader}/prompt_mixture/c.parquet")["Body"].read()
    assert proxy.hit(Action.CUT_BODY) == 2


def test_a_checkpoint_whose_download_is_cut_mid_body_is_downloaded_again_whole(proxy, tmp_path):
    weights = os.urandom(2**20)
    stage_checkpoint(open_store(f"s3://{S3_BUCKET}/cut_ckpt", tmp_path / "writer"), {"weights.bin": weights})
    proxy.arm(Fault("GET", r"/weights\.bin$", Action.CUT_BODY))
    folder = open_store(f"s3://{S3_BUCKET}/cut_ckpt", tmp_path / "reader").local_checkpoint("dpo_checkpoint", "c")
    assert (folder / "weights.bin").read_bytes() == weights and proxy.hit(Action.CUT_BODY) == 1


@pytest.mark.parametrize("action", [Action.SLOW_DOWN, Action.RESET])
def test_a_stage_whose_store_stays_down_past_botocores_retries_is_retried_by_dagster(
    proxy, two_attempts, tmp_path, monkeypatch, action
):
    monkeypatch.setattr("vlm_rl_assets.orchestration.retries.FIRST_DELAY_S", 0)
    store = open_store(f"s3://{S3_BUCKET}/stage_{action.name}", tmp_path)
    proxy.arm(Fault("PUT", r"\.parquet$", action, times=2))  # both of the first run's attempts
    runs = []

    @dg.asset
    @retry_transient
    def prompt_mixture(context) -> None:
        runs.append(context.retry_number)
        store.write_table("prompt_mixture", "c", TABLE, schemas.PROMPTS)

    assert dg.materialize([prompt_mixture]).success
    assert runs == [0, 1] and proxy.hit(action) == 2
    assert store.read_table("prompt_mixture", "c", schemas.PROMPTS).equals(TABLE)


def test_a_checkpoint_whose_part_always_fails_leaves_the_old_one_and_nothing_of_its_own(
    s3, proxy, two_attempts, tmp_path
):
    store = open_store(f"s3://{S3_BUCKET}/part_fails", tmp_path / "writer")
    stage_checkpoint(store, {"config.json": b"1"})
    before = s3_keys(s3, "part_fails/")
    proxy.arm(Fault("PUT", SECOND_PART, Action.INTERNAL_ERROR, times=None))
    with pytest.raises(TRANSIENT_ERRORS):  # so `retry_transient` asks Dagster to retry the stage
        stage_checkpoint(store, {"config.json": b"2", "weights.bin": bytes(MULTIPART_BYTES)})
    assert proxy.hit(Action.INTERNAL_ERROR) == 2
    assert incomplete_uploads(s3, "part_fails/") == []
    assert s3_keys(s3, "part_fails/") == before  # the failed version's config.json is gone too
    folder = open_store(f"s3://{S3_BUCKET}/part_fails", tmp_path / "reader").local_checkpoint("dpo_checkpoint", "c")
    assert (folder / "config.json").read_bytes() == b"1" and not (folder / "weights.bin").exists()


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("PUT", SECOND_PART, Action.INTERNAL_ERROR),
        ("PUT", SECOND_PART, Action.RESET),
        ("POST", r"\?uploads", Action.SLOW_DOWN),  # CreateMultipartUpload
        ("POST", r"\?uploadId=", Action.SLOW_DOWN),  # CompleteMultipartUpload
    ],
)
def test_a_multipart_upload_retried_through_a_fault_publishes_whole_and_leaves_no_upload(
    s3, proxy, tmp_path, method, path, action
):
    prefix = f"retried_{method}_{action.name}"
    weights = os.urandom(MULTIPART_BYTES)
    proxy.arm(Fault(method, path, action))
    stage_checkpoint(open_store(f"s3://{S3_BUCKET}/{prefix}", tmp_path / "writer"), {"weights.bin": weights})
    assert proxy.hit(action) == 1
    assert incomplete_uploads(s3, f"{prefix}/") == []
    folder = open_store(f"s3://{S3_BUCKET}/{prefix}", tmp_path / "reader").local_checkpoint("dpo_checkpoint", "c")
    assert (folder / "weights.bin").read_bytes() == weights


def test_a_dataset_object_throttled_past_botocores_retries_is_transient_and_a_missing_one_is_not(
    proxy, two_attempts, tmp_path
):
    uri = open_store(f"s3://{S3_BUCKET}/dataset", tmp_path).write_table("prompt_mixture", "c", TABLE, schemas.PROMPTS)
    proxy.arm(Fault("GET", r"/prompt_mixture/c\.parquet$", Action.SLOW_DOWN, times=None))
    with pytest.raises(TRANSIENT_ERRORS, match="SlowDown"):
        S3Reader().read(uri)
    with pytest.raises(FileNotFoundError):
        S3Reader().read(uri.replace("c.parquet", "gone.parquet"))
    assert proxy.hit(Action.SLOW_DOWN) == 2


def test_a_dataset_whose_images_stay_throttled_fails_the_stage_transiently_instead_of_refusing_rows(
    s3, proxy, two_attempts, tmp_path
):
    """A store outage is not bad data: the rows are not quarantined as image_unreadable, the stage is retried."""
    from vlm_rl_assets.prompts.datasets import load_dataset

    row = '{"question": "Which?", "answer": "1", "answer_type": "number", "images": ["a.png"]}\n'
    s3.put_object(Bucket=S3_BUCKET, Key="ds/data.jsonl", Body=row.encode())
    s3.put_object(Bucket=S3_BUCKET, Key="ds/a.png", Body=png_bytes(Image.new("RGB", (8, 8))))
    proxy.arm(Fault("GET", r"/ds/a\.png$", Action.SLOW_DOWN, times=None))
    store = open_store(tmp_path / "store")
    with pytest.raises(TRANSIENT_ERRORS, match="SlowDown"):
        load_dataset(f"s3://{S3_BUCKET}/ds/data.jsonl", store, {"train": 5}, {})
    assert proxy.hit(Action.SLOW_DOWN) == 2
