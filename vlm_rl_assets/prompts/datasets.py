"""Users' own datasets, validated row by row: Parquet (a file or a folder of shards), a `datasets` save_to_disk
folder, JSONL or a JSON array, local or on S3, in this project's columns or a common layout (`row_formats.py`).

A problem with the dataset as a whole (unreadable, not Parquet, a required or mapped column absent) stops the load
with what to fix. A bad row (unknown answer type, empty question, an answer key that names no option, text that is
not UTF-8, a conversation without a user turn, an image that is missing or will not decode) is refused with its
`file:row` and a reason instead, so one bad row never sinks a large dataset; the caller fails above
`max_bad_fraction`. Rows are read a batch at a time (`dataset_files.py`) and images are imported into the
content-addressed store as they are met, once each, whether a row gives a path, a URI or the image's bytes (the
`datasets` Image struct `{bytes, path}`); prompts refer to them by store URI.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image, UnidentifiedImageError

from vlm_rl_assets.prompts.dataset_files import DataFile, DatasetError, RowError, data_files, file_rows
from vlm_rl_assets.prompts.prompt_table import ANSWER_TYPES, LETTERS, PromptSource, SourceLoad
from vlm_rl_assets.prompts.row_formats import RowFormat
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.store.open import UriReader, parent_uri, resolve_uri

# dev: where settings are chosen; bench: read only to report; bootstrap: the embedded base's SFT rows, never prompts
SPLITS = ("train", "dev", "bench", "bootstrap")
# hashed in this order, so adding a dev share never moves a bench row, nor a bootstrap share a dev or bench row
HASHED = ("bench", "dev", "bootstrap")
COLUMNS_HELP = (
    "question (text), answer (text), answer_type (one of " + " | ".join(ANSWER_TYPES) + "), "
    "images (list of paths relative to the dataset file, s3:// URIs / absolute paths, or embedded image bytes); "
    "optional: choices (list of option texts), rationale, objects (list), split (" + " | ".join(SPLITS) + ")"
)
IMAGE_EXTENSIONS = {"JPEG": "jpg", "TIFF": "tif"}  # Pillow format -> stored file extension, where not format.lower()
ImageRef = str | bytes | dict  # a path or URI, an image's bytes, or datasets' Image struct {bytes, path}
Progress = Callable[[int, int], None]  # (prompts kept, prompts asked for)
PROGRESS_ROWS = 1000  # rows read between progress reports
SCHEMALESS = ("jsonl", "json")  # kinds whose columns are known only from their rows


def load_dataset(
    uri: str,
    store: Store,
    limits: dict[str, int],
    fractions: dict[str, float],
    row_format: RowFormat = RowFormat(),
    progress: Progress | None = None,
) -> SourceLoad:
    """The first `limits[split]` usable rows of each split `limits` names, in file order, with their images imported.

    A row without a `split` is placed by the hash of its question and images (`hashed_split`, stable across
    runs and row order). Reading stops once every split is full.
    """
    reader = UriReader()
    images = ImageImporter(store, reader)
    sources: dict[str, list[PromptSource]] = {split: [] for split in SPLITS}
    refused: list[tuple[str, str]] = []
    rows, wanted, seen = 0, sum(limits.get(split, 0) for split in SPLITS), set[str]()
    for file, number, raw in _dataset_rows(uri, reader, row_format):
        kept = sum(map(len, sources.values()))
        if kept >= wanted:
            break
        if progress and rows % PROGRESS_ROWS == 0:
            progress(kept, wanted)
        rows += 1
        try:
            if isinstance(raw, Exception):
                raise raw
            if file.kind in SCHEMALESS:
                seen.update(column for column, value in raw.items() if value is not None)
            native, labels = row_format.to_native(raw)
            split, source = _parse(native, labels, fractions)
            if len(sources[split]) < limits.get(split, 0):
                folder = parent_uri(file.uri)
                stored = tuple(images.put(ref, labels["images"], folder) for ref in source.pop("images"))
                sources[split].append(PromptSource(**source, images=stored))
        except RowError as err:
            refused.append((f"{file.uri}:{number}", str(err)))
    if not rows:
        raise DatasetError(f"dataset {uri} has no rows; each row needs {COLUMNS_HELP}")
    if seen:
        row_format.check(seen, uri)  # JSON has no schema: a column no row had stops the load here
    if progress:
        progress(sum(map(len, sources.values())), wanted)
    return SourceLoad({split: kept for split, kept in sources.items() if split in limits}, refused, rows)


def _dataset_rows(
    uri: str, reader: UriReader, row_format: RowFormat
) -> Iterator[tuple[DataFile, int, dict | Exception]]:
    """(file, row number in it, row) of every file of the dataset, in order."""
    for file in data_files(uri, reader):
        for number, raw in file_rows(file, reader, lambda names, file=file: row_format.check(names, file.uri)):
            yield file, number, raw


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


def _parse(raw: dict[str, Any], labels: dict[str, str], fractions: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """(split, PromptSource fields with images as given) of a valid row; RowError otherwise. `labels` name a field
    in reasons by the dataset's column where the two differ."""
    question = _text(raw, "question", labels)
    if not question.strip():
        raise RowError("empty_question: write the question")
    answer_type = _text(raw, "answer_type", labels)
    if answer_type not in ANSWER_TYPES:
        raise RowError(f"unknown_answer_type: {answer_type!r}; use one of {' | '.join(ANSWER_TYPES)}")
    answer = raw.get("answer")
    number = isinstance(answer, int | float) and not isinstance(answer, bool)
    answer = str(answer) if number else _text(raw, "answer", labels)
    if not answer.strip():
        raise RowError("empty_answer: write the ground truth")
    choices = _texts(raw, "choices", labels)
    if answer_type == "choice":
        answer = _option_letter(answer, choices)
    images = _image_refs(raw.get("images"), labels.get("images", "images"))
    if not images:
        raise RowError(
            f"no_images: give at least one image (a path, a URI or its bytes) in {labels.get('images', 'images')}"
        )
    split = raw.get("split")
    if split is None:
        split = hashed_split(question, [_split_key(ref) for ref in images], fractions)
    elif split not in SPLITS:
        raise RowError(f"bad_split: {split!r}; use {', '.join(SPLITS)}, or leave it out for a hashed split")
    fields = {
        "question": question,
        "answer": answer.strip(),
        "answer_type": answer_type,
        "images": images,
        "choices": choices,
        "rationale": _text(raw, "rationale", labels, required=False),
        "objects": _texts(raw, "objects", labels),
    }
    return split, fields


def _image_refs(value: Any, label: str) -> tuple[ImageRef, ...]:
    """A row's images: one or a list of paths / URIs, bytes, or `{bytes, path}` structs."""
    refs = value if isinstance(value, list) else [] if value is None else [value]
    for ref in refs:
        if not (isinstance(ref, str | bytes) or (isinstance(ref, dict) and {"bytes", "path"} >= ref.keys())):
            raise RowError(
                f"bad_value: {label} must be image paths, URIs or embedded images ({{bytes, path}}), got {ref!r:.80}"
            )
    return tuple(refs)


def _split_key(ref: ImageRef) -> str:
    """What of an image places its row: the path as written where there is one (so the splits of a dataset stay
    where they were), else the hash of its bytes."""
    if isinstance(ref, dict):
        ref = ref.get("path") or ref.get("bytes") or b""
    return ref if isinstance(ref, str) else hashlib.sha256(ref).hexdigest()


def _text(raw: dict, key: str, labels: dict[str, str], required: bool = True) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise RowError(f"missing_value: {labels.get(key, key)} is empty; fill it in")
        return ""
    if not isinstance(value, str):
        raise RowError(f"bad_value: {labels.get(key, key)} must be text, got {type(value).__name__}")
    return value


def _texts(raw: dict, key: str, labels: dict[str, str]) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(f"bad_value: {labels.get(key, key)} must be a list of text, got {value!r:.80}")
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
    """Puts each image a dataset gives into the store once, and remembers what a path or URI was (URI or refusal);
    embedded bytes are decoded and stored as they are met, never kept."""

    def __init__(self, store: Store, reader: UriReader):
        self.store, self.reader = store, reader
        self.done: dict[str, str | RowError] = {}

    def put(self, ref: ImageRef, label: str, folder: str) -> str:
        """The store URI of image `ref` (a relative path is relative to `folder`); RowError when it cannot be used."""
        if isinstance(ref, dict):
            ref = ref.get("bytes") or ref.get("path") or b""
        if isinstance(ref, bytes):
            result = self._store(ref, f"the image in {label}")
        else:
            uri = resolve_uri(ref, folder)
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
        except ConnectionError:
            raise  # the store or network is down, not the row bad: the stage is retried
        except OSError as err:
            return RowError(f"image_unreadable: {err}")
        return self._store(data, uri)

    def _store(self, data: bytes, name: str) -> str | RowError:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # decode fully: a truncated file fails here, not mid-batch
                kind = image.format or "PNG"
        except Image.DecompressionBombError as err:
            return RowError(f"image_oversize: {name}: {err}")
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            return RowError(f"image_undecodable: {name}: {err}")
        return self.store.put_image(data, IMAGE_EXTENSIONS.get(kind, kind.lower()))
