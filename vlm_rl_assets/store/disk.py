"""A full disk under a local store, and the partial writes a failed or killed write leaves beside its target.

A full disk fails a stage at once with the numbers and what to do (`DiskFullError`): waiting frees no space, so it
is not retried. A write in flight is a hidden sibling of its target, `.<name>.<tag>.tmp` (or, while a checkpoint is
being replaced, `.<name>.<tag>.old`): removed when its write fails, and swept when the same target is next written
if a kill or a power loss left it (`sweep_stale`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vlm_rl_assets import metering
from vlm_rl_assets.readable import quantity

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left, or the user's quota spent
FULL_TEXT = os.strerror(errno.ENOSPC)  # what a library that wraps the OSError still prints (safetensors' writer)
STAGING_SUFFIXES = (".tmp", ".old")
_STARTED = time.time()  # this process loaded the store: before any write of its own (psutil's start is to 1 s)
_LISTED: dict[Path, dict[str, list[Path]]] = {}  # folder -> its staging entries by target name, when first written


class DiskFullError(OSError):
    """No space left where the store writes. An OSError with errno ENOSPC, as the OS raises, but not one of the
    transient errors `orchestration/retries.py` retries."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is a full disk."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS or FULL_TEXT in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full(path: Path, need: str = "") -> DiskFullError:
    """The error for a write at `path` on a full disk; `need`: what the write needed, where known."""
    return DiskFullError(
        f"No space left on the disk of the store at {path}: {quantity(free_bytes(path), 'B')} free"
        f"{'; ' + need if need else ''}. Free space on that disk, or set storage.root to a folder on a larger one, "
        "then rerun: it resumes from what the store holds."
    )


@contextmanager
def removed_on_failure(entry: Path, target: Path, need: Callable[[], str]) -> Iterator[None]:
    """Run a block that writes `entry` (a temporary file or staging folder) for `target`: if it fails, `entry` is
    removed, and a full disk becomes the DiskFullError naming `target` and `need()` (asked before the removal, so it
    may measure what was written)."""
    try:
        yield
    except BaseException as error:
        needed = need() if is_disk_full(error) else ""
        remove(entry)
        if is_disk_full(error):
            raise disk_full(target, needed) from error
        raise


def checkpoint_need(staging: Path, where: str = "") -> str:
    """What a checkpoint that filled the disk needed: more than it had written to `staging` (`where`)."""
    return f"the checkpoint needed more than the {quantity(folder_bytes(staging), 'B')} written{where}"


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder` (a checkpoint being published; 0 when it is gone)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def require_room(path: Path, needed: int, what: str) -> None:
    """Refuse before writing `what` (`needed` bytes) at `path` when its disk has less free: found then, not hours
    into a run or gigabytes into a save."""
    if free_bytes(path) < needed:
        raise disk_full(path, f"{what} needs about {quantity(needed, 'B')}")


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the disk of `path`, or of its nearest folder that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def staging_name(target: Path, suffix: str) -> Path:
    """A hidden sibling of `target` to write it in (`.tmp`) or to move its old version aside to (`.old`)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}{suffix}")


def claim(fd: int) -> None:
    """Lock the staging entry open at `fd` for as long as its writer keeps it open: `sweep_stale` leaves a locked
    entry alone, and the OS drops the lock when the writer dies, however it dies."""
    with suppress(OSError):  # not lockable here (a folder on NFS): then no sweep removes it either
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextmanager
def claimed(folder: Path) -> Iterator[None]:
    """`claim` a staging folder while the block runs."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        claim(fd)
        yield
    finally:
        os.close(fd)


def remove(entry: Path) -> None:
    """Remove a staging entry, file or folder, if it is there."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def sweep_stale(target: Path) -> int:
    """Remove the staging entries of `target` (`.<name>.*.tmp`, `.<name>.*.old`) that a killed writer left; returns
    how many, also counted as `stale_temp_swept`. Stale: last changed before this process started, and locked by no
    live process. An entry that cannot be locked here (a folder on NFS) is left alone."""
    entries = _staging_entries(target.parent).get(target.name, [])
    swept = [entry for entry in entries if _remove_if_stale(entry)]
    for entry in swept:
        entries.remove(entry)
    metering.count(metering.STALE_TEMP_SWEPT, len(swept))
    return len(swept)


def _staging_entries(folder: Path) -> dict[str, list[Path]]:
    """The staging entries in `folder` by the name of their target, listed once per process: one that appears later
    was made after this process started, so it is not stale to this process (and a folder of 100k images is not
    listed again for every image)."""
    if folder not in _LISTED:
        found: dict[str, list[Path]] = {}
        with suppress(FileNotFoundError):
            for entry in folder.iterdir():
                name, suffix = entry.name, entry.suffix
                if name.startswith(".") and suffix in STAGING_SUFFIXES and name.count(".") >= 3:
                    found.setdefault(name[1:].removesuffix(suffix).rsplit(".", 1)[0], []).append(entry)
        _LISTED[folder] = found
    return _LISTED[folder]


def _remove_if_stale(entry: Path) -> bool:
    try:
        fd = os.open(entry, os.O_RDONLY)
    except OSError:
        return False  # gone already: its writer published or removed it
    try:
        if _changed_since_start(fd) or not _locked_by_me(fd):
            return False
        remove(entry)
        return True
    finally:
        os.close(fd)


def _changed_since_start(fd: int) -> bool:
    """Changed (written, or renamed aside) since this process started: maybe a live writer's, not locked yet."""
    stat = os.fstat(fd)
    return max(stat.st_mtime, stat.st_ctime) >= _STARTED


def _locked_by_me(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it, or it cannot be locked here
    return True
