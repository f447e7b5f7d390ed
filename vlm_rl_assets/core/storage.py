"""Where every table, image and checkpoint lives: `<root>/<asset>/<category>.parquet` and friends.

Writes are atomic (a temporary sibling, then a rename), so a reader never sees half an object and a
killed run leaves either the old object or the new one. Images are stored once, by content hash.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.core import schemas


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's output is absent: the message says which one to materialize."""


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def table_path(self, asset: str, key: str) -> Path:
        return self.root / asset / f"{key}.parquet"

    def write_table(self, asset: str, key: str, df: pl.DataFrame, schema: dict) -> Path:
        path = self.table_path(asset, key)
        df = schemas.check(df, schema, f"{asset}/{key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        df.write_parquet(tmp)
        os.replace(tmp, path)
        return path

    def read_table(self, asset: str, key: str, schema: dict) -> pl.DataFrame:
        path = self.table_path(asset, key)
        if not path.is_file():
            raise MissingUpstreamError(
                f"{asset} for {key!r} not found at {path}. Materialize it first, e.g. "
                f"`dagster asset materialize -m vlm_rl_assets.definitions --select {asset} --partition {key}`"
            )
        return schemas.check(pl.read_parquet(path), schema, f"{asset}/{key}")

    def put_image(self, data: bytes, ext: str = "png") -> str:
        """Store image bytes once under their sha256; return the URI relative to the root."""
        uri = f"images/{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self.root / uri
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return uri

    def load_image(self, uri: str) -> Image.Image:
        """Decode an image fully (so a corrupt file fails here, not mid-batch) as RGB."""
        with Image.open(self.root / uri) as image:
            return image.convert("RGB")

    def checkpoint_dir(self, asset: str, key: str) -> Path:
        return self.root / asset / key

    @contextmanager
    def staged_dir(self, asset: str, key: str) -> Iterator[Path]:
        """A fresh folder to write a checkpoint into; it replaces the final one only on success."""
        final = self.checkpoint_dir(asset, key)
        staging = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        staging.mkdir(parents=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
