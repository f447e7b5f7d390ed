"""Datasets as users have them (Hugging Face Parquet shards and save_to_disk folders with the images inside the rows,
LLaVA JSON, TRL messages, multiple-choice option columns), each read to the same prompt table as the native form;
bad rows in each quarantined with the native form's reasons; a mapping the data cannot satisfy stops the load."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from vlm_rl_assets.config import CategoryConfig
from vlm_rl_assets.prompts.category import PromptSpec, category_prompts
from vlm_rl_assets.prompts.datasets import DatasetError, load_dataset
from vlm_rl_assets.prompts.row_formats import RowFormat
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.dataset_forms import CHOICE_FORMS, OPEN_FORMS, native_jsonl
from vlm_rl_assets_tests.digits import QUESTION, digit_rows
from vlm_rl_assets_tests.helpers import S3_BUCKET

REPO = Path(__file__).resolve().parents[1]
ALL = {"train": 100, "dev": 100, "bench": 100}
FRACTIONS = {"bench": 0.25, "dev": 0.1}


def read(folder: Path, source: Path, keys: dict) -> pl.DataFrame:
    """The prompt table of `source` read as `keys` (a category's format, columns, answer_type) say."""
    category = CategoryConfig(source=str(source), **keys)
    spec = PromptSpec(str(source), ALL, FRACTIONS, 0, "plain", 1, False, False, category.row_format())
    loaded, table = category_prompts(LocalStore(folder / "store"), "digits", spec)
    assert loaded.refused == []
    return table.prompts


def choice_rows(folder: Path, count: int) -> list[dict]:
    """Digits as four-option questions, the right option at every position in turn."""
    rows = []
    for i, row in enumerate(digit_rows(folder, count)):
        digit = int(row["answer"])
        options = [str((digit + step) % 10) for step in (1, 3, 5)]
        options.insert(i % 4, str(digit))
        lines = "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, options))
        answer = string.ascii_uppercase[i % 4]
        question = f"{QUESTION}\n{lines}"
        rows.append(row | {"question": question, "stem": QUESTION, "answer": answer, "answer_type": "choice"})
        rows[-1]["choices"] = options
    return rows


@pytest.mark.parametrize("form", OPEN_FORMS)
def test_each_layout_reads_to_the_native_prompt_table(tmp_path, form):
    """The images beside the data file, as the datasets library keeps an embedded image's file name: the split
    hash reads the name as written, so the same rows keep their splits in every layout."""
    rows = digit_rows(tmp_path, 24, images="")
    native = read(tmp_path, *native_jsonl(tmp_path, rows))
    assert native.height == 24 and set(native["split"]) == {"train", "dev", "bench"}
    assert read(tmp_path, *OPEN_FORMS[form](tmp_path, rows)).equals(native)  # same ids, splits, stored images
    assert len(list((tmp_path / "store" / "images").iterdir())) == 24  # each image stored once


@pytest.mark.parametrize("form", CHOICE_FORMS)
def test_option_columns_and_indexed_choices_read_to_the_native_multiple_choice_table(tmp_path, form):
    rows = choice_rows(tmp_path, 12)
    native = read(tmp_path, *native_jsonl(tmp_path, rows))
    assert sorted(set(native["answer"])) == ["A", "B", "C", "D"]
    assert read(tmp_path, *CHOICE_FORMS[form](tmp_path, rows)).equals(native)


def broken(folder: Path, rows: list[dict], form: str) -> list[dict]:
    """`rows` with the bad rows every layout can carry, at rows 1-4 (images as paths, or bytes where the layout embeds
    them): an image that will not decode, one that is absent, an empty question, a split that is not one."""
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG truncated")
    embeds = form.startswith("hf_")
    bad = [dict(row) for row in rows]
    bad[0]["images"] = [b"\x89PNG truncated" if embeds else "images/broken.png"]
    bad[1]["images"] = [] if embeds else ["images/absent.png"]
    bad[2]["question"] = bad[2]["stem"] = " "
    bad[3]["split"] = "test"
    return bad


EXPECTED = {
    "native_jsonl": ["image_undecodable", "image_missing", "empty_question", "bad_split"],
    "hf_parquet_shards": ["image_undecodable", "no_images", "empty_question", "bad_split"],
    "hf_save_to_disk": ["image_undecodable", "no_images", "empty_question", "bad_split"],
    "llava_json": ["image_undecodable", "image_missing", "empty_question", "bad_split", "no_user_turn"],
    "trl_messages": ["image_undecodable", "image_missing", "empty_question", "bad_split", "no_user_turn"],
    "mcq_option_columns": ["image_undecodable", "image_missing", "empty_question", "bad_split", "missing_options"],
    "mcq_choices_index": ["image_undecodable", "image_missing", "empty_question", "bad_split", "bad_answer_key"],
}


def layout_specific(path: Path, form: str) -> None:
    """Row 5 broken the way only this layout can be: a conversation without a user turn, an option column empty,
    an answer index past the options."""
    if form == "llava_json":
        items = json.loads(path.read_text())
        items[4]["conversations"] = items[4]["conversations"][1:]
        path.write_text(json.dumps(items))
    elif form in ("trl_messages", "mcq_choices_index"):
        lines = path.read_text().splitlines()
        item = json.loads(lines[4])
        if form == "trl_messages":
            item["messages"] = item["messages"][1:]
        else:
            item["answer"] = 7
        lines[4] = json.dumps(item)
        path.write_text("\n".join(lines) + "\n")
    elif form == "mcq_option_columns":
        pl.read_parquet(path).with_row_index().with_columns(
            B=pl.when(pl.col("index") == 4).then(None).otherwise(pl.col("B"))
        ).drop("index").write_parquet(path)


FORMS = {"native_jsonl": native_jsonl} | OPEN_FORMS | CHOICE_FORMS


@pytest.mark.parametrize("form", FORMS)
def test_bad_rows_in_every_layout_are_quarantined_with_the_native_reasons(tmp_path, form):
    choice = form in CHOICE_FORMS
    rows = choice_rows(tmp_path, 12) if choice else [r | {"stem": r["question"]} for r in digit_rows(tmp_path, 12)]
    source, keys = FORMS[form](tmp_path, broken(tmp_path, rows, form))
    if source.is_file():
        layout_specific(source, form)
    loaded = load_dataset(
        str(source),
        LocalStore(tmp_path / "store"),
        ALL,
        FRACTIONS,
        CategoryConfig(source=str(source), **keys).row_format(),
    )
    codes = [reason.split(":")[0] for _, reason in loaded.refused]
    assert codes == EXPECTED[form]
    assert loaded.rows == 12 and sum(map(len, loaded.sources.values())) == 12 - len(codes)
    assert all(key.rsplit(":", 1)[1].isdigit() for key, _ in loaded.refused)  # file:row


def test_text_that_is_not_utf8_is_refused_per_line_in_jsonl_and_for_the_file_in_a_json_array(tmp_path):
    rows = digit_rows(tmp_path, 6)
    for form in ("trl_messages", "llava_json"):
        path, keys = OPEN_FORMS[form](tmp_path, rows)
        path.write_bytes(path.read_bytes().replace(b"Which digit", "Quel chiffre é".encode("latin-1"), 1))
        row_format = CategoryConfig(source=str(path), **keys).row_format()
        if form == "trl_messages":
            loaded = load_dataset(str(path), LocalStore(tmp_path / "store"), ALL, FRACTIONS, row_format)
            assert [reason.split(":")[0] for _, reason in loaded.refused] == ["bad_encoding"]
        else:
            with pytest.raises(DatasetError, match=r"llava.json: byte \d+ is not UTF-8"):
                load_dataset(str(path), LocalStore(tmp_path / "store"), ALL, FRACTIONS, row_format)


def test_a_mapping_names_the_dataset_columns_and_a_missing_one_stops_the_load_with_those_it_has(tmp_path):
    rows = digit_rows(tmp_path, 8)
    native = read(tmp_path, *native_jsonl(tmp_path, rows))
    renamed = pl.DataFrame(
        {
            "problem": [r["question"] for r in rows],
            "solution": [r["answer"] for r in rows],
            "pic": [r["images"] for r in rows],
        }
    )
    renamed.write_parquet(tmp_path / "renamed.parquet")
    columns = {"question": "problem", "answer": "solution", "images": "pic"}
    assert read(tmp_path, tmp_path / "renamed.parquet", {"columns": columns, "answer_type": "number"}).equals(native)
    config = CategoryConfig(source="renamed.parquet", columns=columns | {"answer": "label"}, answer_type="number")
    with pytest.raises(DatasetError, match=r"answer -> 'label' \(it has \['pic', 'problem', 'solution'\]\)"):
        load_dataset(str(tmp_path / "renamed.parquet"), LocalStore(tmp_path), ALL, FRACTIONS, config.row_format())
    unmapped = CategoryConfig(source="renamed.parquet", answer_type="number").row_format()
    with pytest.raises(
        DatasetError, match=r"lacks the required column\(s\) \['question', 'answer', 'images'\].*columns"
    ):
        load_dataset(str(tmp_path / "renamed.parquet"), LocalStore(tmp_path), ALL, FRACTIONS, unmapped)


def test_a_bad_value_names_the_key_and_the_column_it_was_read_from(tmp_path):
    rows = [r | {"question": 7} for r in digit_rows(tmp_path, 1)]
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": 7, "answer": "1", "images": rows[0]["images"]}) + "\n")
    row_format = CategoryConfig(source="d.jsonl", columns={"question": "problem"}, answer_type="number").row_format()
    loaded = load_dataset(str(tmp_path / "d.jsonl"), LocalStore(tmp_path), ALL, FRACTIONS, row_format)
    assert loaded.refused == [
        (f"{tmp_path / 'd.jsonl'}:1", "bad_value: question (column 'problem') must be text, got int")
    ]


def test_a_folder_or_glob_of_shards_is_read_in_order_and_stops_once_the_splits_are_full(tmp_path):
    rows = digit_rows(tmp_path, 24)
    folder, keys = OPEN_FORMS["hf_parquet_shards"](tmp_path, rows)
    row_format = CategoryConfig(source=str(folder), **keys).row_format()
    glob = str(folder / "data" / "train-*.parquet")
    whole = load_dataset(glob, LocalStore(tmp_path / "store"), ALL, FRACTIONS, row_format)
    assert whole.rows == 24
    first = load_dataset(str(folder), LocalStore(tmp_path / "store"), {"train": 2}, FRACTIONS, row_format)
    assert first.rows < 8 and [s.question for s in first.sources["train"]] == [QUESTION] * 2  # shard 1 only
    with pytest.raises(DatasetError, match=r"has no data files \(0 files there\)"):
        load_dataset(str(tmp_path / "empty"), LocalStore(tmp_path), ALL, FRACTIONS, row_format)


def test_config_refuses_a_layout_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="format llava has no answer type column; set answer_type"):
        CategoryConfig(source="d.json", format="llava")
    with pytest.raises(ValueError, match=r"columns names \['conversation'\], which format llava does not read"):
        CategoryConfig(source="d.json", format="llava", answer_type="text", columns={"conversation": "turns"})
    with pytest.raises(ValueError, match="a synthetic source takes none of them"):
        CategoryConfig(source="synthetic:color", answer_type="text")


PIPELINE = {
    "max_bad_fraction": 0.1,
    "model": {"path": "embedded", "device": "cpu", "torch_threads": 2},
    "engine": {"batch_size": 48, "max_new_tokens": 24, "seed": 0, "shard_prompts": 8},
    "bootstrap": {
        "examples_per_category": 40,
        "dev_per_category": 4,
        "min_mean_accuracy": 1.0,
        "max_mean_accuracy": 1.0,
        "max_steps": 20,
        "eval_every": 20,
        "batch_size": 16,
    },
    "training": {"learning_rate": 1.0e-5, "batch_size": 8, "epochs": 1},
    "eval": {"max_new_tokens": 24},
}
SMALL = {"allow_chance_base": True, "n_train": 6, "n_dev": 4, "n_bench": 6, "samples_per_prompt": 4}


def test_digits_in_each_layout_run_through_every_stage_with_no_conversion(tmp_path):
    """Hugging Face Parquet shards with the images inside the rows, a LLaVA JSON and a TRL messages JSONL, each its own
    category, from prompt_mixture to benchmark_scores; one process, so its config's categories are the partitions."""
    rows = digit_rows(tmp_path, 60)
    forms = {"shards": "hf_parquet_shards", "llava": "llava_json", "messages": "trl_messages"}
    sources = {name: OPEN_FORMS[form](tmp_path, rows) for name, form in forms.items()}
    categories = {name: {"source": str(source), **keys, **SMALL} for name, (source, keys) in sources.items()}
    config = tmp_path / "pipeline.yaml"  # JSON is YAML
    config.write_text(
        json.dumps(PIPELINE | {"categories": {"color": {"source": "synthetic:color", **SMALL}} | categories})
    )
    env = {**os.environ, "VLM_RL_CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "vlm_rl_assets_tests.pipeline_worker", str(tmp_path / "store"), ",".join(forms)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    store = LocalStore(tmp_path / "store")
    prompts = {name: store.read_table("prompt_mixture", name, schemas.PROMPTS) for name in forms}
    same = [table.drop("prompt_id", "category") for table in prompts.values()]
    assert same[0].equals(same[1]) and same[1].equals(same[2])  # the same rows, whatever the layout
    for name in forms:
        assert metadata[f"prompt_mixture[{name}]"]["refused_rows"] == 0
        scores = store.read_table("benchmark_scores", name, schemas.BENCHMARK_SCORES)
        bench = prompts[name].filter(pl.col("split") == "bench")
        assert set(scores["model"]) == {"base", "dpo"} and (scores["n"] == bench.height).all() and bench.height


def test_shards_and_a_save_to_disk_folder_on_s3_read_as_they_do_locally(tmp_path, s3):
    rows = digit_rows(tmp_path, 12)
    for form in ("hf_parquet_shards", "hf_save_to_disk"):
        folder, keys = OPEN_FORMS[form](tmp_path, rows)
        for path in folder.rglob("*"):
            if path.is_file():
                s3.put_object(
                    Bucket=S3_BUCKET, Key=f"datasets/{form}/{path.relative_to(folder)}", Body=path.read_bytes()
                )
        assert read(tmp_path, f"s3://{S3_BUCKET}/datasets/{form}/", keys).equals(read(tmp_path, folder, keys))


def test_an_option_row_ends_at_its_first_empty_column_as_pandas_leaves_it():
    """A two-option question in a four-option table: C and D null, or NaN where pandas wrote the table."""
    row = {
        "question": "Which?",
        "A": "cat",
        "B": "dog",
        "C": float("nan"),
        "D": None,
        "answer": 1,
        "hint": float("nan"),
    }
    native, _ = RowFormat("mcq_columns").to_native(row | {"image": "x.png"})
    assert (native["question"], native["choices"], native["answer"]) == (
        "Which?\n(A) cat\n(B) dog",
        ["cat", "dog"],
        "B",
    )


def test_raw_image_bytes_in_a_binary_column_store_the_same_images(tmp_path):
    """A Parquet written by polars or pyarrow with the images' bytes in a plain binary list column: the stored images
    and prompt ids are the native form's (the splits follow the bytes' hash, there being no path)."""
    rows = digit_rows(tmp_path, 8)
    native = read(tmp_path, *native_jsonl(tmp_path, rows))
    images = [[(tmp_path / row["images"][0]).read_bytes()] for row in rows]
    table = pl.DataFrame({"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]})
    table.with_columns(images=pl.Series(images, dtype=pl.List(pl.Binary))).write_parquet(tmp_path / "raw.parquet")
    raw = read(tmp_path, tmp_path / "raw.parquet", {"answer_type": "number"})
    assert sorted(raw["prompt_id"]) == sorted(native["prompt_id"])
    assert sorted(raw["images"].to_list()) == sorted(native["images"].to_list())


def test_trl_prompt_completion_reads_as_messages_or_as_plain_text():
    """TRL's prompt-completion form, conversational or standard: the same question and answer either way."""
    user, assistant = [{"role": "user", "content": "How many?"}], [{"role": "assistant", "content": "3"}]
    messages = RowFormat("messages", answer_type="number")
    for row in ({"prompt": user, "completion": assistant}, {"prompt": "How many?", "completion": "3"}):
        native, _ = messages.to_native(row | {"images": ["x.png"]})
        assert (native["question"], native["answer"]) == ("How many?", "3")
    _, labels = messages.to_native({"prompt": "How many?", "completion": 3, "images": ["x.png"]})
    assert labels["answer"] == "completion"
