"""The store on `s3://bucket/prefix` (AWS, MinIO, moto), through boto3's default credential chain.

Credentials and the endpoint come from the environment only (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` for MinIO or moto, ...), so no secret lives in config.

Tables and images are single PUTs, atomic per object. A checkpoint is uploaded under a fresh version
folder, then `<asset>/<key>/_COMPLETE` (a JSON manifest naming that version and its files) is written
LAST: readers follow the manifest only, so a checkpoint is either absent, the old one, or the new one;
the superseded version is deleted after, and a failed upload deletes what of its own version did upload (boto3 aborts
its multipart uploads). Readers get a local copy, downloaded once per version into
the cache folder (the writer's own staging folder becomes its cached copy). `S3Reader` reads single objects by
URI outside any store root (a user's dataset), with the same credentials.

Faults: botocore retries throttling (`503 SlowDown`), 5xx and dropped connections, up to `MAX_ATTEMPTS`; a body cut
off mid-GET is fetched again. What still fails is `StoreUnavailableError`, a ConnectionError, so a stage's
`retry_transient` asks Dagster to run it again later instead of failing it.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from vlm_rl_assets import metering
from vlm_rl_assets.store import disk
from vlm_rl_assets.store.base import Store

MANIFEST = "_COMPLETE"
SCHEME = "s3://"
# botocore's standard mode makes 3 attempts: a throttled burst (its backoff 1 s, 2 s, ...) would fail within seconds;
# 10 ride out about a minute of `503 SlowDown` before the stage is handed to Dagster's retry. AWS_MAX_ATTEMPTS wins.
MAX_ATTEMPTS = 10
BODY_ATTEMPTS = 3  # GETs of one object whose body is cut off mid-stream, which botocore does not retry
CUT_OFF = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError)
DROPPED = (HTTPClientError, BotoConnectionError, IncompleteReadError)  # resets, timeouts, refused connections
TRANSIENT_CODES = {"RequestTimeout"}  # S3's 400 for a connection left idle; 5xx and 429 are transient by status
P = ParamSpec("P")
R = TypeVar("R")


class StoreUnavailableError(ConnectionError):
    """The object store stayed throttled, failing on its side or unreachable through botocore's retries: a
    ConnectionError, which `retry_transient` turns into a Dagster retry of the stage."""


class UnsafeManifestError(ValueError):
    """A checkpoint manifest names a path outside its checkpoint folder: it is corrupt or forged, never followed."""


def is_s3_uri(uri: str | Path) -> bool:
    return str(uri).startswith(SCHEME)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`."""
    bucket, _, key = uri.removeprefix(SCHEME).partition("/")
    return bucket, key


def s3_client() -> Any:
    """A boto3 S3 client, credentials and endpoint from the environment.

    boto3 is imported here, not at the top of the module, for import speed: it would add about 0.1 s to every
    `import vlm_rl_assets.definitions`, S3 or not. (There is no import cycle to avoid.)
    """
    import boto3
    from botocore.config import Config

    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS))
    return boto3.client("s3", config=Config(retries={"total_max_attempts": attempts}))


def get_body(client: Any, bucket: str, key: str) -> bytes:
    """An object's bytes. botocore retries a failed request, but not a body cut off after its headers came (a reset
    mid-download), so the GET is made again for that, as boto3's `download_file` does."""
    for _ in range(BODY_ATTEMPTS - 1):
        with suppress(CUT_OFF):
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def is_transient(error: BaseException | None) -> bool:
    """Whether `error`, or one it wraps (boto3's upload and download errors wrap botocore's), is the store throttling,
    failing on its side or dropping the connection, rather than a wrong request."""
    while error is not None:
        if isinstance(error, DROPPED):
            return True
        if isinstance(error, ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return status >= 500 or status == 429 or error.response.get("Error", {}).get("Code") in TRANSIENT_CODES
        error = error.__cause__ or error.__context__ or getattr(error, "last_exception", None)
    return False


def unavailable_when_transient(method: Callable[P, R]) -> Callable[P, R]:
    """Wrap a store method that calls S3: a transient failure left after botocore's retries is StoreUnavailableError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except StoreUnavailableError:
            raise
        except Exception as error:
            if is_transient(error):
                raise StoreUnavailableError(f"object store unavailable: {error}") from error
            raise

    return wrapper


class S3Store(Store):
    """`s3://bucket/prefix`; checkpoints are also kept under `cache_dir/bucket/prefix` for loading."""

    def __init__(self, root: str, cache_dir: Path):
        bucket, prefix = split_s3_uri(root)
        if not bucket:
            raise ValueError(f"storage root {root!r} names no bucket; use s3://<bucket>/<prefix>")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.cache = cache_dir / bucket / self.prefix
        self.client = s3_client()

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _uri(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self._key(rel)}"

    @unavailable_when_transient
    def _exists(self, rel: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return False
            raise
        return True

    @unavailable_when_transient
    def _get(self, rel: str) -> bytes:
        try:
            return get_body(self.client, self.bucket, self._key(rel))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(errno.ENOENT, "no such object", self._uri(rel)) from None

    @unavailable_when_transient
    def _put(self, rel: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)

    @unavailable_when_transient
    def _list(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(f"{prefix}/"))
        start = len(self._key(""))
        return sorted(obj["Key"][start:] for page in pages for obj in page.get("Contents", []))

    def local_path(self, rel: str) -> None:
        return None

    def checkpoint_uri(self, asset: str, key: str) -> str:
        return self._uri(f"{asset}/{key}/")

    def has_checkpoint(self, asset: str, key: str) -> bool:
        return self._exists(f"{asset}/{key}/{MANIFEST}")

    def _manifest(self, asset: str, key: str) -> dict | None:
        try:
            return json.loads(self._get(f"{asset}/{key}/{MANIFEST}"))
        except FileNotFoundError:
            return None

    @unavailable_when_transient
    def _local_checkpoint(self, asset: str, key: str) -> Path | None:
        manifest = self._manifest(asset, key)
        if manifest is None:
            return None
        _check_manifest(manifest, self._uri(f"{asset}/{key}/{MANIFEST}"))
        folder = self.cache / asset / key / manifest["version"]
        if folder.is_dir():
            return folder
        download = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
        try:
            for name in manifest["files"]:
                target = download / name
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, self._key(f"{asset}/{key}/{folder.name}/{name}"), str(target))
        except BaseException:
            shutil.rmtree(download, ignore_errors=True)
            raise
        _move_into_place(download, folder)
        return folder

    @contextmanager
    def staged_dir(self, asset: str, key: str, like: Path | None = None) -> Iterator[Path]:
        """Train into a cache folder; on success upload it, write the manifest, and keep it as the cached copy."""
        self.check_room(asset, key, like)
        staging = self.cache / asset / key / f".staging.{uuid.uuid4().hex}.tmp"
        staging.mkdir(parents=True)
        with disk.removed_on_failure(staging, staging.parent, lambda: disk.checkpoint_need(staging, " to the cache")):
            yield staging
            version = self._publish(staging, asset, key)
        _move_into_place(staging, self.cache / asset / key / version)

    def check_room(self, asset: str, key: str, like: Path | None = None) -> None:
        """A checkpoint is staged in the local cache before its upload: refuse when the cache's disk has less free than
        `like` holds (without `like`, nothing is checked: sizing the previous version would download it)."""
        if like is not None:
            what = f"the {asset} checkpoint {key!r}, as large as {like}, staged in the cache,"
            disk.require_room(self.cache / asset / key, disk.folder_bytes(like), what)

    @unavailable_when_transient
    def _publish(self, folder: Path, asset: str, key: str) -> str:
        """Upload `folder` as a new version, then point the manifest at it; returns the version."""
        previous = self._manifest(asset, key)
        version = uuid.uuid4().hex
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        try:
            for name in files:
                self.client.upload_file(str(folder / name), self.bucket, self._key(f"{asset}/{key}/{version}/{name}"))
        except BaseException:
            with suppress(Exception):  # the upload's error is the one to report; what stays is never read (no manifest)
                self._delete_version(asset, key, version)
            raise
        metering.count(metering.STORE_BYTES_WRITTEN, disk.folder_bytes(folder))
        self._write(f"{asset}/{key}/{MANIFEST}", json.dumps({"version": version, "files": files}).encode())
        if previous is not None:
            self._delete_version(asset, key, previous["version"])
        return version

    def _delete_version(self, asset: str, key: str, version: str) -> None:
        """Drop a superseded version. Only the one the old manifest named: another run may be mid-upload."""
        prefix = self._key(f"{asset}/{key}/{version}/")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        stale = [{"Key": obj["Key"]} for page in pages for obj in page.get("Contents", [])]
        for start in range(0, len(stale), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": stale[start : start + 1000], "Quiet": True}
            )


class S3Reader:
    """Objects by `s3://bucket/key` URI, outside any store root (a user's dataset and its images).

    One client, made on the first read, serves every read. A missing object or bucket is FileNotFoundError, any
    other failure OSError (StoreUnavailableError where transient), each naming the URI.
    """

    def __init__(self) -> None:
        self._client: Any = None

    def read(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        with self._errors(uri):
            return get_body(self._s3(), bucket, key)

    def download(self, uri: str, path: Path) -> None:
        """The object streamed to the local file `path` (a large dataset shard never whole in memory)."""
        bucket, key = split_s3_uri(uri)
        with self._errors(uri):
            self._s3().download_file(bucket, key, str(path))

    def list_under(self, prefix_uri: str) -> list[str]:
        """The URIs of every object under `prefix_uri`, sorted."""
        bucket, prefix = split_s3_uri(prefix_uri)
        with self._errors(prefix_uri):
            pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(f"{SCHEME}{bucket}/{item['Key']}" for page in pages for item in page.get("Contents", []))

    def _s3(self) -> Any:
        self._client = self._client or s3_client()
        return self._client

    @staticmethod
    @contextmanager
    def _errors(uri: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as err:
            if isinstance(err, ClientError) and err.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket"):
                raise FileNotFoundError(errno.ENOENT, "no such object", uri) from None
            raise (StoreUnavailableError if is_transient(err) else OSError)(f"{uri}: {err}") from err


def _check_manifest(manifest: dict, uri: str) -> None:
    """Refuse a manifest whose version or file names would be joined onto the cache folder outside of it (an absolute
    path, `..`, a backslash, an empty part), before anything touches the local disk."""
    names = [("version", manifest.get("version"))] + [("file", name) for name in manifest.get("files", [])]
    for kind, name in names:
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        # a name equal to its parts rejoined has no leading `/`, no empty or `.` part
        canonical = bool(parts) and name == "/".join(parts) and ".." not in parts and "\\" not in name
        safe = canonical and (kind == "file" or len(parts) == 1)
        if not safe:
            raise UnsafeManifestError(
                f"checkpoint manifest {uri} names {kind} {name!r}, which is not a relative path inside the checkpoint "
                "folder; nothing was downloaded. The manifest is corrupt or was not written by this pipeline: "
                "rematerialize the checkpoint to republish it."
            )


def _move_into_place(source: Path, target: Path) -> None:
    """Rename a finished local copy to its final name; another process may have got there first."""
    try:
        source.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(source, ignore_errors=True)
