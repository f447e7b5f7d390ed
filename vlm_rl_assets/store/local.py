"""The store on a local folder (`LocalStore`), the default `storage.root`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlm_rl_assets import metering
from vlm_rl_assets.readable import quantity
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.store.disk import (
    checkpoint_need,
    claim,
    claimed,
    folder_bytes,
    remove,
    removed_on_failure,
    require_room,
    staging_name,
    sweep_stale,
)


class LocalStore(Store):
    """A folder; atomicity from writing a hidden sibling, then renaming it into place. A failed write removes its
    sibling; the next write of the same target sweeps the ones a killed run left (`disk.py`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _uri(self, rel: str) -> str:
        return str(self.root / rel)

    def _exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def _get(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def _put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        tmp = staging_name(path, ".tmp")
        with removed_on_failure(tmp, path, lambda: f"the write needed {quantity(len(data), 'B')}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(path)
            with tmp.open("xb") as file:
                claim(file.fileno())
                file.write(data)
                file.flush()
                os.replace(tmp, path)  # while still claimed: no sweep takes it between the write and the rename

    def _list(self, prefix: str) -> list[str]:
        folder = self.root / prefix  # hidden names are writes in flight (`.<name>.<uuid>.tmp`)
        paths = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return sorted(p.relative_to(self.root).as_posix() for p in paths)

    def local_path(self, rel: str) -> Path:
        return self.root / rel

    def checkpoint_uri(self, asset: str, key: str) -> str:
        return str(self.root / asset / key)

    def has_checkpoint(self, asset: str, key: str) -> bool:
        return (self.root / asset / key).is_dir()

    def _local_checkpoint(self, asset: str, key: str) -> Path | None:
        folder = self.root / asset / key
        return folder if folder.is_dir() else None

    @contextmanager
    def staged_dir(self, asset: str, key: str, like: Path | None = None) -> Iterator[Path]:
        self.check_room(asset, key, like)
        final = self.root / asset / key
        staging = staging_name(final, ".tmp")
        with removed_on_failure(staging, final, lambda: checkpoint_need(staging)):
            final.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(final)
            staging.mkdir()
            with claimed(staging):
                yield staging
                metering.count(metering.STORE_BYTES_WRITTEN, folder_bytes(staging))
                _publish(staging, final)

    def check_room(self, asset: str, key: str, like: Path | None = None) -> None:
        """Without `like`, the checkpoint it replaces, if there is one, is the estimate."""
        like = like or self._local_checkpoint(asset, key)
        if like is not None:
            require_room(
                self.root / asset / key, folder_bytes(like), f"the {asset} checkpoint {key!r}, as large as {like},"
            )


def _publish(staging: Path, final: Path) -> None:
    """Rename `staging` to `final`. The old folder is renamed aside (`.old`), not deleted in place, so a kill here never
    leaves half a checkpoint; a failed rename puts it back, and one a kill left aside is swept by the next write."""
    retired = staging_name(final, ".old")
    if final.exists():
        os.replace(final, retired)
    try:
        os.replace(staging, final)
    except BaseException:
        if retired.exists():
            os.replace(retired, final)
        raise
    remove(retired)
