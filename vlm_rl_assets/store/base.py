"""Where every table, image and checkpoint lives: `<root>/<asset>/<category>.parquet` and friends.

The root is a local folder (`local.py`) or `s3://bucket/prefix` (`s3.py`); `open.py` picks the backend, so asset
code never branches on where data lives. Every write is atomic: a reader sees the old object or the new
one, never half of one. Images are stored once by content hash under root-relative URIs
(`images/<sha256>.png`), so tables stay valid when a root is copied elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets import metering
from vlm_rl_assets.readable import quantity
from vlm_rl_assets.store import disk, schemas


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's output is absent. It names the asset and the store key; the assets add the command that makes it (`orchestration/upstream.py`), which the store does not know."""

    def __init__(self, message: str, asset: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.asset, self.key = asset, key
        self.advice = ""  # what to run, added where the command is known

    def __str__(self) -> str:
        return super().__str__() + self.advice


ROUND_PREFIX = "round"
_ROUND_KEY = re.compile(rf"^{ROUND_PREFIX}(\d+)/(.+)$")


def spec_key(spec: dict) -> str:
    """A short stable key for everything that decides some stored work (a JSON-able spec): the same spec finds the
    same work again, any change to it finds none."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def round_key(key: str, pipeline_round: int) -> str:
    """The store key of round `pipeline_round`'s `key`: round 1 keeps a one-round pipeline's keys, a later round's
    tables and checkpoints lie under `round<r>/`."""
    return key if pipeline_round == 1 else f"{ROUND_PREFIX}{pipeline_round}/{key}"


def split_round_key(key: str) -> tuple[str, int]:
    """`round_key`'s inverse: (key, round)."""
    match = _ROUND_KEY.match(key)
    return (match[2], int(match[1])) if match else (key, 1)


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
        """Write all of `data` at once: readers never see a partial object. Counted by `_write`, which calls it."""

    @abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """The root-relative paths of the objects under the folder `prefix`, sorted."""

    @abstractmethod
    def local_path(self, rel: str) -> Path | None:
        """Where a root-relative path lies on this machine's disk; None for a store that is not a local folder."""

    @abstractmethod
    def checkpoint_uri(self, asset: str, key: str) -> str: ...

    @abstractmethod
    def has_checkpoint(self, asset: str, key: str) -> bool: ...

    @abstractmethod
    def staged_dir(self, asset: str, key: str, like: Path | None = None) -> AbstractContextManager[Path]:
        """A fresh local folder to write a checkpoint into; published only if the block succeeds. Refused first when
        its disk cannot hold one as large as `like` (`check_room`)."""

    @abstractmethod
    def check_room(self, asset: str, key: str, like: Path | None = None) -> None:
        """Refuse, before a checkpoint is made, when the disk it is staged on has less free than the folder `like`
        holds, an estimate the caller names: the model it trains (saved whole, LoRA merged, in that model's dtype) or
        the checkpoint it copies. A full disk found then wastes no training."""

    @abstractmethod
    def _local_checkpoint(self, asset: str, key: str) -> Path | None:
        """The published checkpoint as a local folder, or None when there is none."""

    def local_checkpoint(self, asset: str, key: str) -> Path:
        """A local folder holding the checkpoint (`save_pretrained` layout), ready to load."""
        folder = self._local_checkpoint(asset, key)
        if folder is None:
            raise MissingUpstreamError(
                f"{asset} checkpoint {key!r} not found at {self.checkpoint_uri(asset, key)}. Materialize it first.",
                asset,
                key,
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
        self._write(_table_rel(asset, key), buffer.getvalue())
        return self.table_uri(asset, key)

    def table_keys(self, asset: str) -> list[str]:
        """The keys of `asset`'s tables (`<category>`, or deeper such as `<category>/diversity`), sorted."""
        suffix = ".parquet"
        return [rel[len(asset) + 1 : -len(suffix)] for rel in self._list(asset) if rel.endswith(suffix)]

    def read_table(self, asset: str, key: str, schema: dict, added: dict | None = None) -> pl.DataFrame:
        """The table, checked against `schema`; `added`: columns added to the schema since some tables were written,
        with the value their old rows take."""
        try:
            data = self._get(_table_rel(asset, key))
        except FileNotFoundError:
            raise MissingUpstreamError(
                f"{asset} for {key!r} not found at {self.table_uri(asset, key)}. Materialize it first.", asset, key
            ) from None
        table = pl.read_parquet(io.BytesIO(data))
        missing = {name: value for name, value in (added or {}).items() if name not in table.columns}
        table = table.with_columns(pl.lit(value, schema[name]).alias(name) for name, value in missing.items())
        return schemas.check(table, schema, f"{asset}/{key}")

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write an object that is not a table (a review page) at a root-relative path, atomically; returns its URI."""
        self._write(rel, data)
        return self._uri(rel)

    def read_bytes(self, rel: str) -> bytes:
        """An object's bytes (an image for a page); FileNotFoundError when absent."""
        return self._get(rel)

    def put_image(self, data: bytes, ext: str = "png") -> str:
        """Store image bytes once under their sha256; return the URI relative to the root."""
        uri = f"images/{hashlib.sha256(data).hexdigest()}.{ext}"
        if not self._exists(uri):
            self._write(uri, data)
        return uri

    def _write(self, rel: str, data: bytes) -> None:
        self._put(rel, data)
        metering.count(metering.STORE_BYTES_WRITTEN, len(data))

    def load_image(self, uri: str) -> Image.Image:
        """Decode an image fully (so a corrupt file fails here, not mid-batch) as RGB."""
        with Image.open(io.BytesIO(self._get(uri))) as image:
            return image.convert("RGB")

    def subroot(self, rel: str) -> str:
        """The root of a store nested at `rel` under this one (an experiment variant's), as `storage.root` takes it."""
        return self._uri(rel)

    def copy_folders(self, target: Store, asset: str, pattern: str) -> None:
        """Copy into `target` each folder of `asset` matching the glob `pattern` that it lacks, whole or not at all.

        Only between stores on local disk: with an S3 store on either side nothing is copied (listing and copying
        objects there is not written yet), and the target's own runs produce what it lacks.
        """
        source_root, target_root = self.local_path(""), target.local_path("")
        if target is self or source_root is None or target_root is None:
            return
        for folder in (source_root / asset).glob(pattern):
            copy = target_root / folder.relative_to(source_root)
            if not copy.exists():  # copied aside then renamed: a kill mid-copy leaves no half folder behind
                _copy_whole(folder, copy)
                metering.count(metering.STORE_BYTES_WRITTEN, disk.folder_bytes(copy))


def _copy_whole(folder: Path, copy: Path) -> None:
    """Copy `folder` to `copy` through a staging sibling, removed if the copy fails (a full disk: said so)."""
    staging = copy.with_name(f".{copy.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)  # a killed copy's
    with disk.removed_on_failure(
        staging, copy, lambda: f"a copy of {folder} needs {quantity(disk.folder_bytes(folder), 'B')}"
    ):
        shutil.copytree(folder, staging)
        staging.rename(copy)


def _table_rel(asset: str, key: str) -> str:
    return f"{asset}/{key}.parquet"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
