"""Users' own datasets: a Parquet or JSONL file, local or on S3, validated row by row.

A problem with the whole file (unreadable, not Parquet, a required column absent) stops the load
with what to fix. A bad row (unknown answer type, empty question, an answer key that names no
option, text that is not UTF-8, an image that is missing or will not decode) is refused with its
`file:row` and a reason instead, so one bad row never sinks a large dataset; the caller fails
above `max_bad_fraction`. Images are imported once into the content-addressed store; prompts
refer to them by store URI.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
from PIL import Image, UnidentifiedImageError

from vlm_rl_assets.prompts.prompt_table import ANSWER_TYPES, LETTERS, PromptSource, SourceLoad
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.store.open import UriReader, parent_uri, resolve_uri

SUFFIXES = (".parquet", ".jsonl")
REQUIRED = ("question", "answer", "answer_type", "images")
# dev: where settings are chosen; bench: read only to report; bootstrap: the embedded base's SFT rows, never prompts
SPLITS = ("train", "dev", "bench", "bootstrap")
# hashed in this order, so adding a dev share never moves a bench row, nor a bootstrap share a dev or bench row
HASHED = ("bench", "dev", "bootstrap")
COLUMNS_HELP = (
    "question (text), answer (text), answer_type (one of " + " | ".join(ANSWER_TYPES) + "), "
    "images (list of paths relative to the dataset file, or s3:// URIs / absolute paths); optional: "
    "choices (list of option texts), rationale, objects (list), split (" + " | ".join(SPLITS) + ")"
)
FORMATS = {"JPEG": "jpg", "TIFF": "tif"}  # Pillow format -> stored file extension, where it is not format.lower()


class DatasetError(ValueError):
    """The dataset file as a whole cannot be used; the message says what to fix."""


class RowError(ValueError):
    """One row that cannot be used: `code: detail`, recorded as a quarantine reason."""


def is_dataset_source(source: str) -> bool:
    return source.lower().endswith(SUFFIXES)


def load_dataset(uri: str, store: Store, limits: dict[str, int], fractions: dict[str, float]) -> SourceLoad:
    """The first `limits[split]` usable rows of each split `limits` names, in file order, with their images imported.

    A row without a `split` is placed by the hash of its question and images (`hashed_split`, stable across
    runs and row order). Reading stops once every split is full.
    """
    reader = UriReader()
    data = _read_dataset(reader, uri)
    images = ImageImporter(store, reader, parent_uri(uri))
    sources: dict[str, list[PromptSource]] = {split: [] for split in SPLITS}
    refused: list[tuple[str, str]] = []
    rows = 0
    columns: set[str] = set()
    for number, raw in _rows(uri, data):
        if all(len(sources[s]) >= limits.get(s, 0) for s in SPLITS):
            break
        rows += 1
        try:
            if isinstance(raw, RowError):
                raise raw
            columns |= {k for k, v in raw.items() if v is not None}
            split, source = _parse(raw, fractions)
            if len(sources[split]) < limits.get(split, 0):
                sources[split].append(PromptSource(**{**source, "images": tuple(map(images.put, source["images"]))}))
        except RowError as err:
            refused.append((f"{uri}:{number}", str(err)))
    if not rows:
        raise DatasetError(f"dataset {uri} has no rows; each row needs {COLUMNS_HELP}")
    missing = [c for c in REQUIRED if c not in columns]
    if uri.lower().endswith(".jsonl") and columns and missing:
        raise DatasetError(_missing_columns(uri, missing, sorted(columns)))
    return SourceLoad({split: kept for split, kept in sources.items() if split in limits}, refused, rows)


def _read_dataset(reader: UriReader, uri: str) -> bytes:
    """The dataset file's bytes, or a DatasetError saying how to fix its path or access."""
    try:
        return reader.read(uri)
    except FileNotFoundError:
        raise DatasetError(
            f"dataset {uri} not found; fix categories.<c>.source (a relative path is relative to the config file's folder)"
        ) from None
    except OSError as err:
        raise DatasetError(
            f"cannot read dataset {uri}: {err}; for s3:// check the AWS_* credentials and endpoint"
        ) from err


def _missing_columns(uri: str, missing: list[str], present: list[str]) -> str:
    return f"dataset {uri} lacks the required column(s) {missing} (it has {present}); add them to every row: {COLUMNS_HELP}"


def _rows(uri: str, data: bytes) -> Iterator[tuple[int, dict | RowError]]:
    """(row number from 1, the row as a dict or why it cannot be read)."""
    if uri.lower().endswith(".jsonl"):
        yield from _jsonl_rows(data)
        return
    try:
        table = pl.read_parquet(io.BytesIO(data))
    except Exception as err:  # polars raises several error types for a file that is not Parquet
        raise DatasetError(
            f"dataset {uri} is not a readable Parquet file ({err}); write it with polars or pyarrow"
        ) from err
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise DatasetError(_missing_columns(uri, missing, table.columns))
    yield from enumerate(table.iter_rows(named=True), start=1)


def _jsonl_rows(data: bytes) -> Iterator[tuple[int, dict | RowError]]:
    """One JSON object per line; blank lines are skipped but counted, so row numbers are line numbers."""
    for number, line in enumerate(data.split(b"\n"), start=1):
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


def hashed_split(question: str, images: list[str], fractions: dict[str, float]) -> str:
    """The first split (`HASHED` order) whose running sum of `fractions` (bench_fraction, dev_fraction,
    bootstrap_fraction) is above the hash's position in [0, 1), else train."""
    digest = hashlib.sha256("\x1f".join((question, *images)).encode()).digest()
    position, edge = int.from_bytes(digest[:8]) / 2**64, 0.0
    for split in HASHED:
        edge += fractions.get(split, 0.0)
        if position < edge:
            return split
    return "train"


def _parse(raw: dict, fractions: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """(split, PromptSource fields with images as written) of a valid row; RowError otherwise."""
    question = _text(raw, "question")
    if not question.strip():
        raise RowError("empty_question: write the question")
    answer_type = _text(raw, "answer_type")
    if answer_type not in ANSWER_TYPES:
        raise RowError(f"unknown_answer_type: {answer_type!r}; use one of {' | '.join(ANSWER_TYPES)}")
    answer = raw.get("answer")
    answer = str(answer) if isinstance(answer, int | float) and not isinstance(answer, bool) else _text(raw, "answer")
    if not answer.strip():
        raise RowError("empty_answer: write the ground truth")
    choices = _texts(raw, "choices")
    if answer_type == "choice":
        answer = _option_letter(answer, choices)
    images = _texts(raw, "images")
    if not images:
        raise RowError("no_images: list at least one image path or URI in images")
    split = raw.get("split")
    if split is None:
        split = hashed_split(question, images, fractions)
    elif split not in SPLITS:
        raise RowError(f"bad_split: {split!r}; use {', '.join(SPLITS)}, or leave it out for a hashed split")
    fields = {
        "question": question,
        "answer": answer.strip(),
        "answer_type": answer_type,
        "images": images,
        "choices": choices,
        "rationale": _text(raw, "rationale", required=False),
        "objects": _texts(raw, "objects"),
    }
    return split, fields


def _text(raw: dict, column: str, required: bool = True) -> str:
    value = raw.get(column)
    if value is None:
        if required:
            raise RowError(f"missing_value: {column} is empty; fill it in")
        return ""
    if not isinstance(value, str):
        raise RowError(f"bad_value: {column} must be text, got {type(value).__name__}")
    return value


def _texts(raw: dict, column: str) -> tuple[str, ...]:
    value = raw.get(column)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(f"bad_value: {column} must be a list of text, got {value!r:.80}")
    return tuple(value)


def _option_letter(answer: str, choices: tuple[str, ...]) -> str:
    """The answer key of a multiple-choice row as a letter that indexes an option (when choices are given)."""
    letter = answer.strip().strip("()").upper()
    valid = LETTERS[: len(choices)] if choices else LETTERS
    if len(letter) != 1 or letter not in valid:
        options = f"A-{valid[-1]}" if choices else "a letter A-Z"
        raise RowError(
            f"bad_answer_key: {answer!r} is not an option ({options}); a choice answer is the option's letter"
        )
    return letter


class ImageImporter:
    """Puts each image a dataset names into the store once, and remembers what it was (URI or refusal)."""

    def __init__(self, store: Store, reader: UriReader, folder: str):
        self.store, self.reader, self.folder = store, reader, folder
        self.done: dict[str, str | RowError] = {}

    def put(self, ref: str) -> str:
        """The store URI of image `ref` (as written in a row); RowError when it cannot be used."""
        uri = resolve_uri(ref, self.folder)
        if uri not in self.done:
            self.done[uri] = self._import(uri)
        result = self.done[uri]
        if isinstance(result, RowError):
            raise result
        return result

    def _import(self, uri: str) -> str | RowError:
        try:
            data = self.reader.read(uri)
        except FileNotFoundError:
            return RowError(f"image_missing: {uri}")
        except OSError as err:
            return RowError(f"image_unreadable: {err}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # decode fully: a truncated file fails here, not mid-batch
                kind = image.format or "PNG"
        except Image.DecompressionBombError as err:
            return RowError(f"image_oversize: {uri}: {err}")
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            return RowError(f"image_undecodable: {uri}: {err}")
        return self.store.put_image(data, FORMATS.get(kind, kind.lower()))
