"""A full disk under a local store fails a stage with the numbers and what to do, and leaves no partial files; the
partial files a killed write left are swept when the same target is next written, never a live writer's."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from vlm_rl_assets import metering
from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import TRANSIENT_ERRORS
from vlm_rl_assets.store import disk, schemas
from vlm_rl_assets.store.costs import latest_costs, record_cost
from vlm_rl_assets.store.disk import DiskFullError, claim
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets.store.open import open_store
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import S3_BUCKET
from vlm_rl_assets_tests.test_costs import usage

REPO = Path(__file__).resolve().parents[1]
FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def message(path: Path, need: str) -> str:
    """The pattern of the disk-full message about `path`, saying what was needed."""
    return rf"No space left on the disk of the store at {re.escape(str(path))}.*: [\d.]+ [kMG]?B free; {need}.*storage\.root"


def staging_entries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.endswith((".tmp", ".old"))]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 600 KiB tmpfs (the operator's case), grown to 64 MiB by calling what it yields; skipped where mounting
    is not allowed (not root)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def materialize_colour_prompts(root: Path) -> dg.ExecuteInProcessResult:
    resources = {"pipeline": PipelineResource(configured(), str(root))}
    return dg.materialize(
        everything(resources), selection=["prompt_mixture"], partition_key="color", resources=resources
    )


def test_prompt_mixture_on_a_full_disk_says_where_how_much_and_what_to_do_then_the_rerun_resumes(small_disk):
    folder, grow = small_disk
    store = folder / "store"
    with pytest.raises(Exception, match=message(store, "the write needed")) as failed:
        materialize_colour_prompts(store)
    assert not staging_entries(store)
    assert not any(isinstance(error, TRANSIENT_ERRORS) for error in chain(failed.value))  # not retried
    grow()
    assert materialize_colour_prompts(store).success
    assert LocalStore(store).has_table("prompt_mixture", "color") and not staging_entries(store)


def chain(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def filling_disk(monkeypatch: pytest.MonkeyPatch, root: Path, room: int) -> None:
    """A disk under `root` with `room` bytes left: a write past them writes what fits, then raises ENOSPC."""
    real_open = Path.open
    left = [room]

    class Filling:
        def __init__(self, file):
            self.file = file

        def write(self, data) -> int:
            fits = min(left[0], len(data))
            self.file.write(bytes(data[:fits]))
            left[0] -= fits
            if fits < len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return fits

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def opened(path, mode="r", *args, **kwargs):
        file = real_open(path, mode, *args, **kwargs)
        return Filling(file) if root in Path(path).parents and "r" not in mode else file

    monkeypatch.setattr(Path, "open", opened)


def test_prompt_mixture_with_an_injected_full_disk_fails_clearly_and_leaves_no_partial_files(tmp_path, monkeypatch):
    store = tmp_path / "store"
    filling_disk(monkeypatch, store, room=20_000)
    with pytest.raises(Exception, match=message(store, "the write needed")):
        materialize_colour_prompts(store)
    assert not staging_entries(store)
    monkeypatch.undo()
    assert materialize_colour_prompts(store).success and not staging_entries(store)


def test_a_table_write_on_a_full_disk_removes_its_partial_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    filling_disk(monkeypatch, tmp_path, room=100)
    with pytest.raises(DiskFullError, match=message(tmp_path / "t" / "c.parquet", "the write needed")) as full:
        store.write_bytes("t/c.parquet", b"x" * 1000)
    assert full.value.errno == errno.ENOSPC and "1 kB" in str(full.value)
    assert not staging_entries(tmp_path) and not store._exists("t/c.parquet")


def test_a_checkpoint_that_fills_the_disk_is_removed_whole_and_the_old_one_kept(tmp_path):
    store = LocalStore(tmp_path)
    with store.staged_dir("dpo_checkpoint", "c") as out:
        (out / "config.json").write_text("1")
    with pytest.raises(DiskFullError, match="the checkpoint needed more than the 6 B written"):
        with store.staged_dir("dpo_checkpoint", "c") as out:
            (out / "model.bin").write_bytes(b"weight")
            raise RuntimeError("safetensors: No space left on device (os error 28)")  # how a library wraps it
    assert (store.local_checkpoint("dpo_checkpoint", "c") / "config.json").read_text() == "1"
    assert not staging_entries(tmp_path)


def test_a_failed_publish_puts_the_old_checkpoint_back_and_leaves_no_staging(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    with store.staged_dir("dpo_checkpoint", "c") as out:
        (out / "config.json").write_text("1")
    real_replace = os.replace

    def failing(source, target):
        if Path(source).name.endswith(".tmp") and Path(target).name == "c":
            raise FULL
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(DiskFullError):
        with store.staged_dir("dpo_checkpoint", "c") as out:
            (out / "config.json").write_text("2")
    assert (store.local_checkpoint("dpo_checkpoint", "c") / "config.json").read_text() == "1"
    assert not staging_entries(tmp_path)


def test_a_checkpoint_too_large_for_the_free_space_is_refused_before_it_is_made(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w" * 5000)
    monkeypatch.setattr(disk, "free_bytes", lambda path: 1200)
    store = LocalStore(tmp_path / "store")
    trained = []
    with pytest.raises(DiskFullError, match=message(tmp_path / "store" / "dpo_checkpoint" / "c", "")) as refused:
        with store.staged_dir("dpo_checkpoint", "c", like=model):
            trained.append("c")
    assert f"1.2 kB free; the dpo_checkpoint checkpoint 'c', as large as {model}, needs about 5 kB" in str(
        refused.value
    )
    assert not trained and not staging_entries(tmp_path / "store")  # refused before anything was made
    monkeypatch.setattr(disk, "free_bytes", lambda path: 10_000)
    with store.staged_dir("dpo_checkpoint", "c", like=model):
        trained.append("c")
    store.check_room("dpo_checkpoint", "c")  # no checkpoint to replace, nothing known: not refused
    assert trained == ["c"]


def test_the_disk_full_error_is_an_enospc_oserror_that_is_not_retried():
    error = disk.disk_full(Path("/store/x"), "the write needed 1 B")
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC and not isinstance(error, TRANSIENT_ERRORS)
    assert str(error).startswith("No space left on the disk of the store at /store/x:")


def stale(entry: Path, folder: bool = False) -> Path:
    """A staging entry a killed writer left."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.mkdir() if folder else entry.write_bytes(b"half")
    return entry


def test_a_write_sweeps_the_stale_partial_files_of_its_target_only_and_counts_them(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    mine = [stale(tmp_path / "t" / f".c.parquet.{i}.tmp") for i in range(2)]
    other = stale(tmp_path / "t" / ".d.parquet.0.tmp")
    monkeypatch.setattr(disk, "_STARTED", time.time() + 1)  # as a process started after they were left
    before = metering.counts()[metering.STALE_TEMP_SWEPT]
    write_c(store)
    assert not any(p.exists() for p in mine) and other.exists()
    assert metering.counts()[metering.STALE_TEMP_SWEPT] - before == 2


def test_a_checkpoint_sweeps_stale_staging_and_old_folders(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    left = [
        stale(tmp_path / "dpo_checkpoint" / f".c.{i}.{suffix}", folder=True) for i, suffix in enumerate(("tmp", "old"))
    ]
    monkeypatch.setattr(disk, "_STARTED", time.time() + 1)
    with store.staged_dir("dpo_checkpoint", "c") as out:
        (out / "config.json").write_text("1")
    assert not any(p.exists() for p in left) and not staging_entries(tmp_path)


def write_c(store: LocalStore) -> None:
    store.write_table("t", "c", pl.DataFrame({"a": [1]}), {"a": pl.Int64})


def test_a_live_writers_entry_is_never_swept(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    entry = stale(tmp_path / "t" / ".c.parquet.live.tmp")
    monkeypatch.setattr(disk, "_STARTED", entry.stat().st_ctime - 1)
    write_c(store)
    assert entry.exists()  # written since this process started: maybe a live writer's, not locked yet
    monkeypatch.setattr(disk, "_STARTED", time.time() + 1)
    writer = os.open(entry, os.O_RDONLY)
    try:
        claim(writer)  # another open file, as another process's: its lock conflicts with the sweep's
        write_c(store)
        assert entry.exists()  # older than this process, but locked: a live writer's
    finally:
        os.close(writer)


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from vlm_rl_assets.store.local import LocalStore
with LocalStore(sys.argv[1]).staged_dir("dpo_checkpoint", "c") as out:
    (out / "model.bin").write_bytes(b"w" * 1000)
    Path(sys.argv[1], "ready").touch()
    time.sleep(60)
"""

RERUN = """
import sys
from vlm_rl_assets import metering
from vlm_rl_assets.store.local import LocalStore
with LocalStore(sys.argv[1]).staged_dir("dpo_checkpoint", "c") as out:
    (out / "model.bin").write_bytes(b"w")
print(metering.counts()[metering.STALE_TEMP_SWEPT])
"""


def test_a_checkpoint_killed_mid_write_is_swept_by_the_next_run_but_not_while_its_writer_lives(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=REPO)
    rerun = [sys.executable, "-c", RERUN, str(tmp_path)]
    try:
        for _ in range(1200):
            if (tmp_path / "ready").exists():
                break
            time.sleep(0.05)
        beside = subprocess.run(rerun, cwd=REPO, capture_output=True, text=True, check=True)
        assert beside.stdout.strip() == "0" and len(staging_entries(tmp_path)) == 1  # the live writer's is kept
    finally:
        writer.kill()
        writer.wait()
    after = subprocess.run(rerun, cwd=REPO, capture_output=True, text=True, check=True)
    assert after.stdout.strip() == "1" and not staging_entries(tmp_path)


def test_old_costs_tables_read_with_the_swept_count_as_zero(tmp_path):
    store = LocalStore(tmp_path)
    row = {"asset": "a", "category": "c", "round": 1, "run_id": "r0", "recorded_at": datetime.now(UTC)}
    old = pl.DataFrame([row | dataclasses.asdict(usage())], schema=schemas.COSTS).drop(metering.STALE_TEMP_SWEPT)
    buffer = io.BytesIO()
    old.write_parquet(buffer)
    store.write_bytes("costs/a/c.parquet", buffer.getvalue())  # as written before the count was added
    record_cost(store, "a", "c", usage(stale_temp_swept=3), "r1")
    recorded = store.read_table("costs", "a/c", schemas.COSTS)
    assert recorded[metering.STALE_TEMP_SWEPT].to_list() == [0, 3]
    assert latest_costs(store)[metering.STALE_TEMP_SWEPT].to_list() == [3]


def test_a_folder_is_listed_for_stale_entries_once_per_process_not_once_per_write(tmp_path, monkeypatch):
    """A folder of 100k images is not listed again for every image it gets (which made storing them quadratic)."""
    listed = []
    iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listed.append(self) or iterdir(self))
    store = LocalStore(tmp_path)
    for shade in range(5):
        store.put_image(f"image {shade}".encode())
    assert listed.count(tmp_path / "images") == 1


def test_an_s3_checkpoint_staged_on_a_full_cache_disk_fails_clearly_and_is_refused_early(s3, tmp_path, monkeypatch):
    """On S3 a checkpoint is staged in the local cache before upload: the same clear error, the same early check."""
    store = open_store(f"s3://{S3_BUCKET}/full", tmp_path / "cache")
    with pytest.raises(DiskFullError, match="the checkpoint needed more than the 6 B written to the cache"):
        with store.staged_dir("dpo_checkpoint", "c") as out:
            (out / "model.bin").write_bytes(b"weight")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list((tmp_path / "cache").rglob(".staging.*")) and not store.has_checkpoint("dpo_checkpoint", "c")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w" * 5000)
    monkeypatch.setattr(disk, "free_bytes", lambda path: 1200)
    with pytest.raises(DiskFullError, match="1.2 kB free; the dpo_checkpoint checkpoint 'c', as large as .*, staged"):
        with store.staged_dir("dpo_checkpoint", "c", like=model):
            pass
