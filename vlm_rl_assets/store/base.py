"""Where every table, image and checkpoint lives: `<root>/<asset>/<category>.parquet` and friends.

The root is a local folder or `s3://bucket/prefix` (`open_store` picks the backend), so asset code
never branches on where data lives. Every write is atomic: a reader sees the old object or the new
one, never half of one. Images are stored once by content hash under root-relative URIs
(`images/<sha256>.png`), so tables stay valid when a root is copied elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.store import schemas

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlm_rl_assets"


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's output is absent: the message says which one to materialize."""


def materialize_command(asset: str, partition: str | None) -> str:
    """The CLI call that produces `asset` (for one partition, if it is partitioned)."""
    command = f"dagster asset materialize -m vlm_rl_assets.definitions --select {asset}"
    return f"`{command} --partition {partition}`" if partition else f"`{command}`"


class Store(ABC):
    """Tables, images and checkpoints under one root; backends supply byte access and checkpoints."""

    @abstractmethod
    def _uri(self, rel: str) -> str:
        """The full address of a root-relative path, for messages and metadata."""

    @abstractmethod
    def _exists(self, rel: str) -> bool: ...

    @abstractmethod
    def _get(self, rel: str) -> bytes:
        """The object's bytes; FileNotFoundError (with `filename` set to its URI) when absent."""

    @abstractmethod
    def _put(self, rel: str, data: bytes) -> None:
        """Write all of `data` at once: readers never see a partial object."""

    @abstractmethod
    def checkpoint_uri(self, asset: str, key: str) -> str: ...

    @abstractmethod
    def has_checkpoint(self, asset: str, key: str) -> bool: ...

    @abstractmethod
    def staged_dir(self, asset: str, key: str) -> AbstractContextManager[Path]:
        """A fresh local folder to write a checkpoint into; published only if the block succeeds."""

    @abstractmethod
    def _local_checkpoint(self, asset: str, key: str) -> Path | None:
        """The published checkpoint as a local folder, or None when there is none."""

    def local_checkpoint(self, asset: str, key: str, *, partitioned: bool = True) -> Path:
        """A local folder holding the checkpoint (`save_pretrained` layout), ready to load."""
        folder = self._local_checkpoint(asset, key)
        if folder is None:
            raise MissingUpstreamError(
                f"{asset} checkpoint {key!r} not found at {self.checkpoint_uri(asset, key)}. Materialize it first: "
                f"{materialize_command(asset, key if partitioned else None)}"
            )
        return folder

    def table_uri(self, asset: str, key: str) -> str:
        return self._uri(_table_rel(asset, key))

    def has_table(self, asset: str, key: str) -> bool:
        return self._exists(_table_rel(asset, key))

    def write_table(self, asset: str, key: str, df: pl.DataFrame, schema: dict) -> str:
        """Check `df` against `schema`, write it as one parquet object; returns its URI."""
        df = schemas.check(df, schema, f"{asset}/{key}")
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        self._put(_table_rel(asset, key), buffer.getvalue())
        return self.table_uri(asset, key)

    def read_table(self, asset: str, key: str, schema: dict) -> pl.DataFrame:
        try:
            data = self._get(_table_rel(asset, key))
        except FileNotFoundError:
            raise MissingUpstreamError(
                f"{asset} for {key!r} not found at {self.table_uri(asset, key)}. Materialize it first, e.g. "
                f"{materialize_command(asset, key)}"
            ) from None
        return schemas.check(pl.read_parquet(io.BytesIO(data)), schema, f"{asset}/{key}")

    def put_image(self, data: bytes, ext: str = "png") -> str:
        """Store image bytes once under their sha256; return the URI relative to the root."""
        uri = f"images/{hashlib.sha256(data).hexdigest()}.{ext}"
        if not self._exists(uri):
            self._put(uri, data)
        return uri

    def load_image(self, uri: str) -> Image.Image:
        """Decode an image fully (so a corrupt file fails here, not mid-batch) as RGB."""
        with Image.open(io.BytesIO(self._get(uri))) as image:
            return image.convert("RGB")


def _table_rel(asset: str, key: str) -> str:
    return f"{asset}/{key}.parquet"


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
        # the old folder is renamed aside, not deleted in place: a kill here never leaves half a checkpoint
        retired = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
        if final.exists():
            os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)


def open_store(root: str | Path, cache_dir: str | Path | None = None) -> Store:
    """The store for `root`: `s3://bucket/prefix` is S3 (checkpoints cached in `cache_dir`), else a folder."""
    if str(root).startswith("s3://"):
        from vlm_rl_assets.store.s3 import S3Store

        return S3Store(str(root), Path(cache_dir or DEFAULT_CACHE_DIR))
    return LocalStore(root)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
