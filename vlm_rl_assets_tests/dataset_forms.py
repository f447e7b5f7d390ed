"""The same rows in each layout users bring, written with the libraries that write them (the `datasets` library for
Hugging Face Parquet shards and save_to_disk folders), so the loader meets the files a user has, not imitations.

Each writer takes native rows (question, answer, answer_type, images as paths relative to `folder` or bytes, optional
split; multiple choice: choices, and `stem`, the question without its option lines) and returns (source path, the
category config keys that read it).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

SHARDS = 3


def native_jsonl(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    path = folder / "native.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "stem"}) + "\n" for row in rows))
    return path, {}


def _split(row: dict) -> dict:
    return {"split": row["split"]} if "split" in row else {}


def _hf_dataset(folder: Path, rows: list[dict]):
    """A `datasets.Dataset` whose `image` column is the Image feature with each image's bytes inside the row (the
    path kept as written, as the hub's files keep the file name)."""
    import datasets

    def image(row: dict) -> dict | bytes | None:
        value = row["images"][0] if row["images"] else None
        if isinstance(value, str):
            return {"bytes": (folder / value).read_bytes(), "path": value}
        return {"bytes": value, "path": None} if value is not None else None

    columns = {"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]}
    columns["image"] = [image(row) for row in rows]
    if any("split" in row for row in rows):
        columns["split"] = [row.get("split") for row in rows]
    return datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())


def hf_parquet_shards(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    """`data/train-0000K-of-00003.parquet`, as `huggingface-cli download --repo-type dataset` leaves a dataset."""
    dataset, shards = _hf_dataset(folder, rows), folder / "hub" / "data"
    shards.mkdir(parents=True)
    for index in range(SHARDS):
        shard = dataset.shard(SHARDS, index, contiguous=True)
        shard.to_parquet(str(shards / f"train-{index:05d}-of-{SHARDS:05d}.parquet"))
    return folder / "hub", {"answer_type": rows[0]["answer_type"]}


def hf_save_to_disk(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    _hf_dataset(folder, rows).save_to_disk(str(folder / "saved"), num_shards=2)
    return folder / "saved", {"answer_type": rows[0]["answer_type"]}


def llava_json(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    """LLaVA-Instruct's layout: a JSON array, one image, the question after an `<image>` line."""
    items = [
        {
            "id": str(number),
            "image": row["images"][0] if row["images"] else None,
            "conversations": [
                {"from": "human", "value": f"<image>\n{row['question']}"},
                {"from": "gpt", "value": row["answer"]},
            ],
        }
        | _split(row)
        for number, row in enumerate(rows)
    ]
    path = folder / "llava.json"
    path.write_text(json.dumps(items, indent=1))
    return path, {"format": "llava", "answer_type": rows[0]["answer_type"]}


def trl_messages(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    """TRL's vision layout: `images` and `messages` with typed content parts."""
    items = [
        {
            "images": row["images"],
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["question"]}]},
                {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]},
            ],
        }
        | _split(row)
        for row in rows
    ]
    path = folder / "messages.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path, {"format": "messages", "answer_type": rows[0]["answer_type"]}


def mcq_option_columns(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    """MMBench's layout: options in columns A..D, the answer a letter, the image column `image`, as Parquet."""
    import polars as pl

    table = [
        {"question": row["stem"], "answer": row["answer"], "image": row["images"][0] if row["images"] else None}
        | dict(zip(string.ascii_uppercase, row["choices"]))
        | _split(row)
        for row in rows
    ]
    path = folder / "mmbench.parquet"
    pl.DataFrame(table).write_parquet(path)
    return path, {"format": "mcq_columns"}


def mcq_choices_index(folder: Path, rows: list[dict]) -> tuple[Path, dict]:
    """ScienceQA's layout: a `choices` list, the answer its index, the image column `image`, as JSONL."""
    items = [
        {
            "question": row["stem"],
            "choices": row["choices"],
            "answer": string.ascii_uppercase.index(row["answer"]) if row["answer"] in "ABCD" else 7,
            "image": row["images"][0] if row["images"] else None,
        }
        | _split(row)
        for row in rows
    ]
    path = folder / "scienceqa.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path, {"format": "mcq_columns"}


OPEN_FORMS = {
    "hf_parquet_shards": hf_parquet_shards,
    "hf_save_to_disk": hf_save_to_disk,
    "llava_json": llava_json,
    "trl_messages": trl_messages,
}
CHOICE_FORMS = {"mcq_option_columns": mcq_option_columns, "mcq_choices_index": mcq_choices_index}
