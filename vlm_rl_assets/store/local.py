"""The store on a local folder (`LocalStore`), the default `storage.root`."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlm_rl_assets import metering
from vlm_rl_assets.store.base import Store, folder_bytes


class LocalStore(Store):
    """A folder; atomicity from writing a hidden sibling, then renaming it into place."""

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

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
    def staged_dir(self, asset: str, key: str) -> Iterator[Path]:
        final = self.root / asset / key
        staging = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        staging.mkdir(parents=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        metering.count(metering.STORE_BYTES_WRITTEN, folder_bytes(staging))
        # the old folder is renamed aside, not deleted in place: a kill here never leaves half a checkpoint
        retired = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
        if final.exists():
            os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
