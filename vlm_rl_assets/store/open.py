"""Local path or `s3://` URI: the one place that picks the backend from an address, so no other module tests for
"s3://" itself."""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlm_rl_assets.store.base import Store
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets.store.s3 import SCHEME, S3Reader, S3Store, is_s3_uri
from vlm_rl_assets.store.settings import DEFAULT_CACHE_DIR


def open_store(root: str | Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> Store:
    """The store for `root`: `s3://bucket/prefix` is S3 (checkpoints cached in `cache_dir`), else a folder."""
    if is_s3_uri(root):
        return S3Store(str(root), Path(cache_dir))
    return LocalStore(root)


def resolve_uri(ref: str, folder: str) -> str:
    """A path as written in a config or a row: s3:// URIs and absolute paths as they are, others
    relative to `folder` (a local folder or an s3:// prefix)."""
    if is_s3_uri(ref):
        return ref
    if is_s3_uri(folder):
        return SCHEME + posixpath.normpath(posixpath.join(folder.removeprefix(SCHEME), ref))
    return str((Path(folder) / Path(ref).expanduser()).resolve())  # an absolute ref replaces folder


def parent_uri(uri: str) -> str:
    """The folder (or s3:// prefix) holding `uri`, which `resolve_uri` takes relative paths against."""
    return posixpath.dirname(uri) if is_s3_uri(uri) else str(Path(uri).parent)


class UriReader:
    """Bytes of local files and s3:// objects outside any store root (a user's dataset file and its images).

    A missing file or object is FileNotFoundError, any other failure OSError.
    """

    def __init__(self) -> None:
        self._s3 = S3Reader()

    def read(self, uri: str) -> bytes:
        return self._s3.read(uri) if is_s3_uri(uri) else Path(uri).read_bytes()

    @contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """A local path holding `uri`'s bytes while the block runs: the file itself, or an s3:// object downloaded to a
        temporary file (streamed, never whole in memory; Parquet is read by seeking) and deleted after."""
        if not is_s3_uri(uri):
            yield Path(uri)
            return
        with tempfile.TemporaryDirectory(prefix="vlm-rl-dataset-") as folder:
            path = Path(folder) / posixpath.basename(uri)
            self._s3.download(uri, path)
            yield path

    def list_under(self, folder: str) -> list[str]:
        """Every file under a local folder or an s3:// prefix, recursively, sorted."""
        if is_s3_uri(folder):
            return self._s3.list_under(folder.rstrip("/") + "/")
        return sorted(str(path) for path in Path(folder).rglob("*") if path.is_file())
