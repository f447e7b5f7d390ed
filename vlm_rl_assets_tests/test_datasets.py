"""Users' own datasets: Parquet / JSONL, local or s3://, validated row by row, run as their own category."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.prompts.datasets import DatasetError, load_dataset
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import S3_BUCKET

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "shapes_dataset"
E2E_CONFIG = Path(__file__).parent / "data" / "user_dataset.yaml"
ALL = {"train": 100, "dev": 100, "bench": 100}
FRACTIONS = {"bench": 0.25, "dev": 0.1}


def example_rows() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLE / "data.jsonl").read_text().splitlines()]


def copy_example(folder: Path, rows: list[dict] | None = None, name: str = "data.jsonl") -> Path:
    """The example's images under `folder`, and `rows` (default: the example's) as JSONL or Parquet."""
    shutil.copytree(EXAMPLE / "images", folder / "images")
    rows = example_rows() if rows is None else rows
    path = folder / name
    if name.endswith(".parquet"):
        pl.DataFrame(rows).write_parquet(path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_example_loads_with_splits_and_images_imported_once(tmp_path):
    store = LocalStore(tmp_path / "store")
    loaded = load_dataset(str(EXAMPLE / "data.jsonl"), store, ALL, fractions=FRACTIONS)
    assert (loaded.rows, loaded.refused) == (20, [])
    assert {split: len(rows) for split, rows in loaded.sources.items()} == {"train": 11, "dev": 2, "bench": 7}
    # 16 image files, the colour rows reuse four of them: each stored once, rows refer to store URIs
    assert len(list((tmp_path / "store" / "images").iterdir())) == 16
    uris = {uri for split in loaded.sources.values() for s in split for uri in s.images}
    assert len(uris) == 16 and all(uri.startswith("images/") and uri.endswith(".png") for uri in uris)
    choice = loaded.sources["train"][0]
    assert (choice.answer, choice.answer_type, choice.choices[:2]) == ("B", "choice", ("circle", "square"))
    again = load_dataset(str(EXAMPLE / "data.jsonl"), store, ALL, fractions=FRACTIONS)
    assert again.sources == loaded.sources  # the hashed split is stable


def test_parquet_and_s3_give_the_same_prompts_as_local_jsonl(tmp_path, s3):
    store = LocalStore(tmp_path / "store")
    local = load_dataset(str(EXAMPLE / "data.jsonl"), store, ALL, fractions=FRACTIONS)
    parquet = copy_example(tmp_path / "pq", name="data.parquet")
    assert load_dataset(str(parquet), store, ALL, fractions=FRACTIONS).sources == local.sources
    for path in [EXAMPLE / "data.jsonl", *(EXAMPLE / "images").iterdir()]:
        s3.put_object(Bucket=S3_BUCKET, Key=f"datasets/shapes/{path.relative_to(EXAMPLE)}", Body=path.read_bytes())
    remote = load_dataset(f"s3://{S3_BUCKET}/datasets/shapes/data.jsonl", store, ALL, fractions=FRACTIONS)
    assert remote.sources == local.sources


def test_sizes_cap_each_split_in_file_order(tmp_path):
    loaded = load_dataset(
        str(EXAMPLE / "data.jsonl"), LocalStore(tmp_path), {"train": 2, "bench": 1}, fractions=FRACTIONS
    )
    assert [len(loaded.sources[s]) for s in ("train", "bench")] == [2, 1]
    assert loaded.rows == 9  # rows 1-8 are train, row 9 the first bench: reading stops there


@pytest.mark.parametrize("name", ["data.jsonl", "data.parquet"])
def test_a_missing_column_names_the_file_the_column_and_the_fix(tmp_path, name):
    rows = [{k: v for k, v in row.items() if k != "answer_type"} for row in example_rows()]
    path = copy_example(tmp_path, rows, name)
    missing = rf"{path}.*lacks the required column\(s\) \['answer_type'\].*add them to every row"
    with pytest.raises(DatasetError, match=missing):
        load_dataset(str(path), LocalStore(tmp_path / "store"), ALL, fractions=FRACTIONS)


def test_a_missing_file_says_where_relative_paths_start(tmp_path):
    with pytest.raises(DatasetError, match="relative to the config file's folder"):
        load_dataset(str(tmp_path / "nope.jsonl"), LocalStore(tmp_path), ALL, fractions=FRACTIONS)


def bad_dataset(folder: Path) -> Path:
    """The example with seven bad rows, one per problem; row numbers are line numbers."""
    rows = example_rows()
    rows[0]["images"] = ["images/unreadable.png"]
    rows[1]["images"] = ["images/absent.png"]
    rows[2]["answer"] = "E"  # 4 choices: A-D
    rows[3]["answer_type"] = "essay"
    rows[4]["question"] = " "
    rows[5]["split"] = "test"
    path = copy_example(folder, rows)
    (folder / "images" / "unreadable.png").write_bytes(b"\x89PNG truncated")
    lines = path.read_bytes().splitlines()
    lines[6] = lines[6].replace(b"Which shape", "Quelle forme géométrique".encode("latin-1"))  # not UTF-8
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_rows_are_refused_with_file_row_and_reason(tmp_path):
    path = bad_dataset(tmp_path)
    loaded = load_dataset(str(path), LocalStore(tmp_path / "store"), ALL, fractions=FRACTIONS)
    reasons = {key: reason.split(":")[0] for key, reason in loaded.refused}
    assert reasons == {
        f"{path}:1": "image_undecodable",
        f"{path}:2": "image_missing",
        f"{path}:3": "bad_answer_key",
        f"{path}:4": "unknown_answer_type",
        f"{path}:5": "empty_question",
        f"{path}:6": "bad_split",
        f"{path}:7": "bad_encoding",
    }
    assert dict(loaded.refused)[f"{path}:3"].startswith("bad_answer_key: 'E' is not an option (A-D)")
    assert loaded.rows == 20 and sum(map(len, loaded.sources.values())) == 13


def category_config(folder: Path, source: Path, max_bad_fraction: float) -> Path:
    """A config whose `color` category (a key of the default partitions) is the dataset at `source`."""
    config = folder / "pipeline.yaml"
    config.write_text(
        f"max_bad_fraction: {max_bad_fraction}\n"
        f"categories:\n  color: {{source: {source.name}, template: cot, mcq_to_open: true, bench_fraction: 0.25}}\n"
    )
    return config


def test_prompt_mixture_quarantines_bad_rows_counts_rewrites_and_fails_above_the_threshold(tmp_path):
    path = bad_dataset(tmp_path)
    store = tmp_path / "store"
    config = category_config(tmp_path, path, max_bad_fraction=0.35)
    resources = {"pipeline": PipelineResource.from_file(str(config), str(store))}
    result = dg.materialize(
        everything(resources), selection=["prompt_mixture"], partition_key="color", resources=resources
    )
    metadata = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert (metadata["input_rows"], metadata["refused_rows"]) == (20, 7)
    assert metadata["refused_by_reason"]["bad_encoding"] == 1
    assert metadata["rewrites"] == {"short_answer_instruction": 8, "mcq_to_open": 5}
    quarantined = LocalStore(store).read_table("quarantine", "prompt_mixture/color", schemas.QUARANTINE)
    assert f"{path}:7" in quarantined["key"].to_list()
    prompts = LocalStore(store).read_table("prompt_mixture", "color", schemas.PROMPTS)
    opened = prompts.filter(pl.col("question") == "Which shape is in the image?").row(0, named=True)
    assert opened["answer_type"] == "text" and opened["answer"] in {"circle", "square", "triangle", "cross"}
    assert opened["prompt_text"].endswith("finish with 'Answer: your answer'.")

    config = category_config(tmp_path, path, max_bad_fraction=0.3)
    strict = {"pipeline": PipelineResource.from_file(str(config), str(store))}
    with pytest.raises(
        Exception, match=r"7 of 20 rows of .*data.jsonl refused .*'bad_encoding': 1.*max_bad_fraction=0.3"
    ):
        dg.materialize(everything(strict), selection=["prompt_mixture"], partition_key="color", resources=strict)


def test_config_resolves_dataset_paths_against_its_folder_and_refuses_other_sources(tmp_path):
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "pipeline.yaml"
    config.write_text("categories:\n  mine: {source: ../data/train.parquet}\n  remote: {source: 's3://b/x/d.jsonl'}\n")
    categories = load_config(config).categories
    assert categories["mine"].source == str(tmp_path / "data" / "train.parquet") and not categories["mine"].synthetic
    assert categories["remote"].source == "s3://b/x/d.jsonl"
    config.write_text("categories:\n  mine: {source: data.csv}\n")
    with pytest.raises(ConfigError, match=r"categories.mine.source.*\.parquet / \.jsonl"):
        load_config(config)


def test_a_user_dataset_runs_through_every_stage_as_its_own_category(tmp_path):
    """Its own process, so the config's categories (`shapes`, the dataset) are the partitions."""
    env = {**os.environ, "VLM_RL_CONFIG": str(E2E_CONFIG), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "vlm_rl_assets_tests.pipeline_worker", str(tmp_path), "shapes"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    assert metadata["prompt_mixture"]["rewrites"]["short_answer_instruction"] == 20
    assert metadata["judged_pairs"]["pairs"] > 0
    store = LocalStore(tmp_path)
    bench = store.read_table("prompt_mixture", "shapes", schemas.PROMPTS).filter(pl.col("split") == "bench")
    scores = store.read_table("benchmark_scores", "shapes", schemas.BENCHMARK_SCORES)
    assert set(scores["model"]) == {"base", "dpo"} and (scores["n"] == bench.height).all()


def test_the_embedded_model_needs_a_synthetic_category_or_bootstrap_rows_to_learn(tmp_path):
    from vlm_rl_assets.bootstrap.embedded import bootstrap_embedded_model

    path = tmp_path / "pipeline.yaml"
    path.write_text("categories:\n  mine: {source: data.jsonl}\n")
    config = load_config(path)
    assert config.synthetic_categories() == {}
    with pytest.raises(
        ValueError, match=r"there is none; add a synthetic category .*bootstrap_fraction.* or set model.path"
    ):
        bootstrap_embedded_model(tmp_path / "out", config.bootstrap, config.synthetic_categories(), 8, 8, print)


def test_a_dev_share_takes_rows_from_train_never_from_bench(tmp_path):
    """Adding dev moves no bench row: bench keeps what it reported on, dev and train stay disjoint from it."""
    store = LocalStore(tmp_path / "store")
    without_dev = load_dataset(str(EXAMPLE / "data.jsonl"), store, ALL, fractions={"bench": 0.25})
    with_dev = load_dataset(str(EXAMPLE / "data.jsonl"), store, ALL, fractions={"bench": 0.25, "dev": 0.25})
    assert with_dev.sources["bench"] == without_dev.sources["bench"] and not without_dev.sources["dev"]
    assert with_dev.sources["dev"] and set(with_dev.sources["dev"]) <= set(without_dev.sources["train"])
    assert len(with_dev.sources["dev"]) + len(with_dev.sources["train"]) == len(without_dev.sources["train"])


def test_a_bootstrap_share_takes_rows_from_train_never_from_dev_or_bench(tmp_path):
    """The embedded base's SFT rows come out of what would be train: bench and dev keep exactly their rows."""
    store = LocalStore(tmp_path / "store")
    rows = [{k: v for k, v in row.items() if k != "split"} for row in example_rows()]  # every row hashed
    rows[0]["split"] = "bootstrap"  # or named in the file
    path = copy_example(tmp_path, rows)
    sizes = ALL | {"bootstrap": 100}
    without = load_dataset(str(path), store, ALL, fractions=FRACTIONS)
    shared = load_dataset(str(path), store, sizes, fractions=FRACTIONS | {"bootstrap": 0.3})
    assert {s: shared.sources[s] for s in ("bench", "dev")} == {s: without.sources[s] for s in ("bench", "dev")}
    assert "bootstrap" not in without.sources  # a split nobody asked for is not read
    named, *hashed = shared.sources["bootstrap"]
    assert hashed and set(hashed) | set(shared.sources["train"]) == set(without.sources["train"])
    assert not set(hashed) & set(shared.sources["train"])
    assert load_dataset(str(path), store, sizes, fractions=FRACTIONS).sources["bootstrap"] == [named]
