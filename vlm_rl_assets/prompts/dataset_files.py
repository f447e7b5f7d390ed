"""Where a dataset's rows are, read a batch at a time so memory holds one batch, never the file.

A source is a Parquet file, a folder or glob of Parquet shards (a Hugging Face hub download), a `datasets`
`save_to_disk` folder (Arrow files: one split, or every split of a DatasetDict), a JSONL file or a JSON array; local or
s3:// (an object is streamed to a temporary file first: Parquet is read by seeking). Parquet is read by row group and
Arrow by record batch, only the columns asked for; JSONL by line, a JSON array one element at a time.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from vlm_rl_assets.store.open import UriReader

SOURCE_SUFFIXES = (".parquet", ".jsonl", ".json")
KINDS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "jsonl", ".json": "json"}  # in the order a folder prefers
GLOB_CHARS = "*?["
METADATA = {"dataset_info.json", "dataset_infos.json", "state.json", "dataset_dict.json"}  # datasets' own files
BATCH_ROWS = 256
JSON_CHUNK = 1 << 20
NOT_SPACE = re.compile(r"\S")
FIX_SOURCE = "fix categories.<c>.source (a relative path is relative to the config file's folder)"

Select = Callable[[list[str]], list[str]]  # a file's column names -> the columns to read (DatasetError if it cannot)
Row = tuple[int, dict | Exception]  # (row number from 1 in its file, the row, or the RowError why it cannot be read)


class DatasetError(ValueError):
    """The dataset as a whole cannot be used; the message says what to fix."""


class RowError(ValueError):
    """One row that cannot be used: `code: detail`, recorded as a quarantine reason."""


@dataclass(frozen=True)
class DataFile:
    uri: str
    kind: str  # a value of KINDS


def is_dataset_source(source: str) -> bool:
    """Anything but `synthetic:<task>` that names data: a file of a known suffix, a glob, or a folder (a trailing
    `/`, a last part without a suffix, or a local folder)."""
    if source.startswith("synthetic:"):
        return False
    name = posixpath.basename(source.rstrip("/"))
    return (
        source.lower().endswith(SOURCE_SUFFIXES)
        or any(char in source for char in GLOB_CHARS)
        or source.endswith("/")
        or "." not in name
        or Path(source).is_dir()
    )


def data_files(source: str, reader: UriReader) -> list[DataFile]:
    """The files `source` names, in reading order (sorted: shards `-00000-of-00012` in their order)."""
    if source.lower().endswith(SOURCE_SUFFIXES) and not any(char in source for char in GLOB_CHARS):
        return [DataFile(source, KINDS[posixpath.splitext(source.lower())[1]])]
    glob_at = min((source.index(char) for char in GLOB_CHARS if char in source), default=None)
    folder = posixpath.dirname(source[:glob_at]) if glob_at is not None else source.rstrip("/")
    try:
        listed = reader.list_under(folder)
    except ConnectionError:
        raise  # the object store is down (after its own retries): the stage is retried, the dataset is not bad
    except OSError as err:
        raise DatasetError(f"cannot list dataset {source}: {err}; for s3:// check the AWS_* credentials") from err
    if glob_at is not None:
        listed = [uri for uri in listed if fnmatch(uri, source)]
    by_kind: dict[str, list[str]] = {}
    for uri in listed:
        kind = KINDS.get(posixpath.splitext(uri.lower())[1])
        if kind and posixpath.basename(uri) not in METADATA and not posixpath.basename(uri).startswith("cache-"):
            by_kind.setdefault(kind, []).append(uri)
    for kind in KINDS.values():  # one kind per source: a hub download's parquet shards, not its README's json
        if kind in by_kind:
            return [DataFile(uri, kind) for uri in by_kind[kind]]
    raise DatasetError(
        f"dataset {source} has no data files ({len(listed)} files there); expected Parquet shards, a datasets "
        f"save_to_disk folder (.arrow files), .jsonl or .json; {FIX_SOURCE}"
    )


def file_rows(file: DataFile, reader: UriReader, select: Select) -> Iterator[Row]:
    """The rows of one data file; a file that cannot be read at all is a DatasetError naming it."""
    try:
        with reader.local_copy(file.uri) as path:
            yield from READERS[file.kind](path, file.uri, select)
    except FileNotFoundError:
        raise DatasetError(f"dataset {file.uri} not found; {FIX_SOURCE}") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"dataset {file.uri}: byte {err.start} is not UTF-8; re-save the file as UTF-8") from None
    except ConnectionError:
        raise  # the object store is down: retried, not a bad dataset
    except OSError as err:
        raise DatasetError(
            f"cannot read dataset {file.uri}: {err}; for s3:// check the AWS_* credentials and endpoint"
        ) from err


def _parquet_rows(path: Path, uri: str, select: Select) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        columns = select(parquet.schema_arrow.names)
        batches = parquet.iter_batches(BATCH_ROWS, columns=columns)
        yield from enumerate(chain.from_iterable(batch.to_pylist() for batch in batches), start=1)
    except pa.ArrowException as err:
        raise DatasetError(
            f"dataset {uri} is not a readable Parquet file ({err}); write it with pyarrow, polars or datasets"
        ) from err


def _arrow_rows(path: Path, uri: str, select: Select) -> Iterator[Row]:
    """A `save_to_disk` file: an Arrow IPC stream, read a record batch at a time (not memory-mapped, so the pages
    read are not kept)."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(path)) as file:
            stream = pa.ipc.open_stream(file)
            columns = select(stream.schema.names)
            batches = (batch.select(columns).to_pylist() for batch in stream)
            yield from enumerate(chain.from_iterable(batches), start=1)
    except pa.ArrowException as err:
        raise DatasetError(
            f"dataset {uri} is not a readable Arrow stream ({err}); point source at the folder datasets' "
            "save_to_disk wrote"
        ) from err


def _jsonl_rows(path: Path, uri: str, select: Select) -> Iterator[Row]:
    """One JSON object per line; blank lines are skipped but counted, so row numbers are line numbers."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                yield number, RowError(f"bad_encoding: byte {err.start} is not UTF-8; re-save the file as UTF-8")
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                yield number, RowError(f"bad_json: {err.msg} at column {err.colno}")
                continue
            yield number, row if isinstance(row, dict) else RowError("bad_json: a row must be a JSON object")


def _json_rows(path: Path, uri: str, select: Select) -> Iterator[Row]:
    """A JSON array of objects (LLaVA's format); row numbers count its elements from 1."""
    with open(path, encoding="utf-8-sig") as text:
        for number, row in enumerate(_json_array(text, uri), start=1):
            yield number, row if isinstance(row, dict) else RowError("bad_json: a row must be a JSON object")


def _json_array(text: TextIO, uri: str) -> Iterator[Any]:
    """The elements of a JSON array one at a time, holding about one element and one chunk of the file."""
    chars, decoder = _Chunks(text), json.JSONDecoder()
    if chars.next_char() != "[":
        raise DatasetError(f"dataset {uri} is not a JSON array of rows; write a JSON array of objects, or JSONL")
    chars.pos += 1
    if chars.next_char() == "]":
        return
    while True:
        yield chars.value(decoder, uri)
        char = chars.next_char()
        if char == "]":
            return
        if char != ",":
            raise DatasetError(f"dataset {uri} is not a JSON array of rows: {char or 'the end'!r} after an element")
        chars.pos += 1


class _Chunks:
    """A text file read a chunk at a time, with what is left of the chunk before."""

    def __init__(self, text: TextIO) -> None:
        self.text, self.buffer, self.pos, self.eof = text, "", 0, False

    def next_char(self) -> str:
        """The next character that is not white space ('' at the end), at `pos`."""
        while (found := NOT_SPACE.search(self.buffer, self.pos)) is None:
            if not self._more():
                return ""
        self.pos = found.start()
        return self.buffer[self.pos]

    def value(self, decoder: json.JSONDecoder, uri: str) -> Any:
        while True:
            self.next_char()  # raw_decode does not skip white space
            try:
                value, self.pos = decoder.raw_decode(self.buffer, self.pos)
                return value
            except json.JSONDecodeError as err:
                if not self._more():
                    raise DatasetError(f"dataset {uri} is not valid JSON ({err.msg}); fix or re-export it") from None

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.text.read(JSON_CHUNK)
        self.eof = not chunk
        self.buffer, self.pos = self.buffer[self.pos :] + chunk, 0
        return bool(chunk)


READERS: dict[str, Callable[[Path, str, Select], Iterator[Row]]] = {
    "parquet": _parquet_rows,
    "arrow": _arrow_rows,
    "jsonl": _jsonl_rows,
    "json": _json_rows,
}
