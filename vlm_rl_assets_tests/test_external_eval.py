"""External benchmark harnesses without the harnesses: command lines, fake lmms-eval / VLMEvalKit packages that write
results files in the real layouts (run as subprocesses), the not-installed error, and the unconfigured asset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from vlm_rl_assets.assets.external_benchmarks import external_benchmarks
from vlm_rl_assets.evaluation import external_eval
from vlm_rl_assets.evaluation.external_eval import HarnessFailed, HarnessNotInstalled, evaluate
from vlm_rl_assets.evaluation.settings import ExternalEvalSettings
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.open import open_store

# lmms_eval/__main__.py's flags; the results file as lmms_eval/loggers/evaluation_tracker.py writes it:
# <output_path>/<sanitized model name>/<date>_results.json. The score is 0.5 for a folder named base, else 0.6.
FAKE_LMMS_EVAL = """
import argparse, json, pathlib, sys
parser = argparse.ArgumentParser()
for flag in ("--model", "--model_args", "--tasks", "--batch_size", "--output_path", "--limit"):
    parser.add_argument(flag)
parser.add_argument("--log_samples", action="store_true")
args = parser.parse_args()
pretrained = dict(pair.split("=", 1) for pair in args.model_args.split(","))["pretrained"]
print(f"Model Responding: {args.model} on {args.tasks}", flush=True)
if args.tasks == "crash":
    sys.exit("Traceback: CUDA out of memory")
tasks = [t for t in args.tasks.split(",") if t != "unknown_task"]  # the real one logs the error and exits 0
if not tasks:
    sys.exit(0)
score = 0.5 if pathlib.Path(pretrained).name == "base" else 0.6
results = {
    "results": {
        "mmstar": {"alias": "mmstar", "average,none": score, "average_stderr,none": "N/A", "coarse perception,none": 0.7},
        "ai2d": {"alias": "ai2d", "exact_match,flexible-extract": score, "exact_match_stderr,flexible-extract": 0.01},
    },
    "group_subtasks": {"mmstar": [], "ai2d": []},
    "configs": {}, "versions": {}, "n-shot": {}, "higher_is_better": {},
    "n-samples": {"mmstar": {"original": 1500, "effective": 1500}, "ai2d": {"original": 3088, "effective": 8}},
    "config": {"model": args.model, "model_args": args.model_args, "batch_size": args.batch_size},
}
folder = pathlib.Path(args.output_path) / pretrained.replace("/", "__")
folder.mkdir(parents=True)
(folder / "20261126_120000_results.json").write_text(json.dumps(results))
"""

# run.py's --config JSON and --work-dir; score files as vlmeval/smp/file.py names them in <work-dir>/<model>/<eval id>/,
# linked into <work-dir>/<model>/; MCQ tables as report_acc builds them.
FAKE_VLMEVALKIT_RUN = """
import argparse, json, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.add_argument("--work-dir")
parser.add_argument("--judge")
args = parser.parse_args()
config = json.loads(pathlib.Path(args.config).read_text())
for name, model in config["model"].items():
    assert model["class"] == "Qwen2VLChat" and (pathlib.Path(model["model_path"]) / "config.json").is_file()
    print(f"Qwen2VLChat loads {pathlib.Path(model['model_path']).name}", flush=True)
    score = 0.5 if name == "base" else 0.6
    root = pathlib.Path(args.work_dir) / name
    run = root / "T20261126_Gabcdef12"
    run.mkdir(parents=True)
    for dataset, entry in config["data"].items():
        stem = run / f"{name}_{dataset}"
        pathlib.Path(f"{stem}.xlsx").write_text("predictions")
        if entry["class"] == "ImageMCQDataset":
            split = "dev" if dataset.startswith("MMBench") else "none"
            bonus = 0.2 if dataset.endswith("V11") else 0.0
            pathlib.Path(f"{stem}_acc.csv").write_text(f"split,Overall,CP\\n{split},{score + bonus},0.9\\n")
        elif entry["class"] == "ImageYORNDataset":
            pathlib.Path(f"{stem}_score.csv").write_text(f"split,Overall,precision\\nOverall,{score},0.8\\n")
        else:
            pathlib.Path(f"{stem}_score.json").write_text(json.dumps({"Final Score": 700, "Norm": {"all": score}}))
    for file in run.iterdir():
        os.symlink(file, root / file.name)
"""


def settings(**overrides) -> ExternalEvalSettings:
    return ExternalEvalSettings(**{"harness": "lmms_eval", "tasks": ["mmstar", "ai2d"], **overrides})


def checkpoint(folder: Path, model_type: str = "qwen2_vl") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "preprocessor_config.json").write_text("{}")  # what base_model_dir checks a folder holds
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    return folder


def on_path(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importable here (find_spec) and in the harness subprocess (PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def fake_lmms_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "lmms_eval"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_LMMS_EVAL)
    on_path(package.parent, monkeypatch)


@pytest.fixture
def fake_vlmevalkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install's layout: the git checkout holds run.py beside the vlmeval package."""
    checkout = tmp_path / "VLMEvalKit"
    (checkout / "vlmeval").mkdir(parents=True)
    (checkout / "vlmeval" / "__init__.py").write_text("")
    (checkout / "run.py").write_text(FAKE_VLMEVALKIT_RUN)
    on_path(checkout, monkeypatch)


def test_lmms_eval_command_line():
    config = settings(
        model_args={"max_pixels": 602112, "use_flash_attention_2": True},
        batch_size=4,
        log_samples=True,
        extra_args=["--limit", "8"],
    )
    assert external_eval.lmms_eval_command(config, Path("/ckpt/policy"), Path("/out")) == [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        "qwen2_vl",
        "--model_args",
        "pretrained=/ckpt/policy,max_pixels=602112,use_flash_attention_2=True",
        "--tasks",
        "mmstar,ai2d",
        "--batch_size",
        "4",
        "--output_path",
        "/out",
        "--log_samples",
        "--limit",
        "8",
    ]
    assert external_eval.lmms_eval_command(settings(model_type="qwen2_5_vl"), Path("/c"), Path("/o"))[4] == "qwen2_5_vl"


def test_vlmevalkit_config_and_command_line():
    config = settings(
        harness="vlmevalkit",
        tasks=["ImageMCQDataset:MMStar", "ImageYORNDataset:POPE"],
        model_args={"max_new_tokens": 128},
        extra_args=["--judge", "exact_matching"],
    )
    assert external_eval.vlmevalkit_config(config, "policy", Path("/w/qwen2_vl-policy")) == {
        "model": {"policy": {"class": "Qwen2VLChat", "model_path": "/w/qwen2_vl-policy", "max_new_tokens": 128}},
        "data": {
            "MMStar": {"class": "ImageMCQDataset", "dataset": "MMStar"},
            "POPE": {"class": "ImageYORNDataset", "dataset": "POPE"},
        },
    }
    assert external_eval.vlmevalkit_command(Path("/kit/run.py"), Path("/w/config.json"), Path("/w"), config) == [
        sys.executable,
        "/kit/run.py",
        "--config",
        "/w/config.json",
        "--work-dir",
        "/w",
        "--judge",
        "exact_matching",
    ]


@pytest.mark.parametrize(
    "harness, install", [("lmms_eval", "pip install lmms-eval"), ("vlmevalkit", "pip install -e ./VLMEvalKit")]
)
def test_a_missing_harness_says_what_to_pip_install(harness, install, tmp_path, monkeypatch):
    monkeypatch.setattr(external_eval, "find_spec", lambda name: None)
    config = settings(harness=harness, tasks=["ImageMCQDataset:MMStar"])
    with pytest.raises(HarnessNotInstalled, match="GPU deployment") as error:
        evaluate(config, "base", checkpoint(tmp_path / "base"), tmp_path / "work", print)
    assert install in str(error.value) and "external_eval.harness: none" in str(error.value)


def test_vlmeval_without_its_checkout_names_the_editable_install(tmp_path, monkeypatch):
    (tmp_path / "site" / "vlmeval").mkdir(parents=True)
    (tmp_path / "site" / "vlmeval" / "__init__.py").write_text("")  # a wheel install: no run.py beside it
    on_path(tmp_path / "site", monkeypatch)
    with pytest.raises(HarnessNotInstalled, match="run.py ships only in its git checkout.*git clone"):
        external_eval.vlmevalkit_run_script()


def test_fake_lmms_eval_runs_and_its_results_become_score_rows(fake_lmms_eval, tmp_path):
    work = tmp_path / "work"
    stale = work / "old" / "19990101_results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # an earlier run's file must not be read
    lines: list[str] = []
    scores = evaluate(settings(), "base", checkpoint(tmp_path / "base"), work, lines.append)
    assert lines[0].startswith("running ") and "Model Responding: qwen2_vl on mmstar,ai2d" in lines
    assert not stale.exists()
    rows = {(r["category"], r["metric"]): r for r in scores.iter_rows(named=True)}
    assert set(rows) == {
        ("external/mmstar", "average"),
        ("external/mmstar", "coarse perception"),
        ("external/ai2d", "exact_match,flexible-extract"),
    }
    assert rows["external/mmstar", "average"] == {
        "category": "external/mmstar",
        "model": "base",
        "metric": "average",
        "value": 0.5,
        "n": 1500,
        "ci_low": None,
        "ci_high": None,
    }
    assert rows["external/ai2d", "exact_match,flexible-extract"]["n"] == 8
    assert scores.schema == pl.Schema(schemas.BENCHMARK_SCORES)


@pytest.mark.parametrize(
    "tasks, message",
    [(["unknown_task"], "wrote no results file under"), (["crash"], "(?s)exited with 1.*CUDA out of memory")],
)
def test_a_failed_lmms_eval_run_raises_with_its_output(fake_lmms_eval, tmp_path, tasks, message):
    with pytest.raises(HarnessFailed, match=message):
        evaluate(settings(tasks=tasks), "base", checkpoint(tmp_path / "base"), tmp_path / "work", lambda line: None)


def test_fake_vlmevalkit_runs_and_its_score_files_become_rows(fake_vlmevalkit, tmp_path):
    config = settings(
        harness="vlmevalkit",
        tasks=[
            "ImageMCQDataset:MMBench_DEV_EN",
            "ImageMCQDataset:MMBench_DEV_EN_V11",
            "ImageYORNDataset:POPE",
            "OCRBench:OCRBench",
        ],
        extra_args=["--judge", "exact_matching"],
    )
    lines: list[str] = []
    policy = checkpoint(tmp_path / "ckpt" / "mixture", "qwen2_5_vl")
    scores = evaluate(config, "policy", policy, tmp_path / "work", lines.append)
    # the link's name tells Qwen2VLChat the architecture, which policy_checkpoint/mixture does not
    assert "Qwen2VLChat loads qwen2_5_vl-policy" in lines
    values = {(r["category"], r["metric"]): r["value"] for r in scores.iter_rows(named=True)}
    assert values == {
        ("external/MMBench_DEV_EN", "dev/Overall"): 0.6,
        ("external/MMBench_DEV_EN", "dev/CP"): 0.9,
        ("external/MMBench_DEV_EN_V11", "dev/Overall"): pytest.approx(0.8),
        ("external/MMBench_DEV_EN_V11", "dev/CP"): 0.9,
        ("external/POPE", "Overall/Overall"): 0.6,
        ("external/POPE", "Overall/precision"): 0.8,
        ("external/OCRBench", "Final Score"): 700.0,
        ("external/OCRBench", "Norm/all"): 0.6,
    }
    assert set(scores["model"]) == {"policy"} and scores["n"].null_count() == scores.height


def test_vlmevalkit_dataset_without_scores_is_an_error(fake_vlmevalkit, tmp_path):
    scores_dir = tmp_path / "work" / "base"
    scores_dir.mkdir(parents=True)
    (scores_dir / "base_MMStar_acc.csv").write_text("split,Overall\nnone,0.5\n")
    with pytest.raises(HarnessFailed, match=r"no score file for \['POPE'\]"):
        external_eval.vlmevalkit_scores(tmp_path / "work", "base", ["MMStar", "POPE"])


def pipeline_resource(tmp_path: Path, external: dict) -> PipelineResource:
    config = {
        "model": {"path": str(checkpoint(tmp_path / "base"))},
        "storage": {"root": str(tmp_path / "store")},
        "external_eval": {"work_dir": str(tmp_path / "work"), **external},
        "categories": {"color": {"source": "synthetic:color"}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return PipelineResource.from_file(str(path))


def test_unconfigured_asset_runs_nothing_and_records_why(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("no harness may run"))
    result = dg.materialize([external_benchmarks], resources={"pipeline": pipeline_resource(tmp_path, {})})
    assert result.success
    assert result.asset_materializations_for_node("external_benchmarks") == []  # no table claimed
    (observation,) = result.asset_observations_for_node("external_benchmarks")
    assert "external_eval.harness is none" in observation.metadata["skipped"].text
    assert not (tmp_path / "store" / "external_benchmarks").exists() and not (tmp_path / "work").exists()


def test_asset_runs_the_harness_on_base_and_policy(fake_lmms_eval, tmp_path):
    resource = pipeline_resource(tmp_path, {"harness": "lmms_eval", "tasks": ["mmstar", "ai2d"]})
    checkpoint(tmp_path / "store" / "policy_checkpoint" / "mixture")
    result = dg.materialize([external_benchmarks], resources={"pipeline": resource})
    (materialization,) = result.asset_materializations_for_node("external_benchmarks")
    scores = open_store(tmp_path / "store").read_table("external_benchmarks", "scores", schemas.BENCHMARK_SCORES)
    assert scores.group_by("model").len().sort("model").rows() == [("base", 3), ("policy", 3)]
    assert materialization.metadata["harness"].text == "lmms_eval" and materialization.metadata["metrics"].value == 3
    deltas = materialization.metadata["deltas"].value
    assert "| external/mmstar | average | 0.500 | 0.600 | 0.100 |" in deltas  # shown rounded: 0.6 - 0.5 is 0.0999…


def test_readme_examples_are_valid_config():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Standard benchmarks on GPU deployments")[1].split("```yaml\n")[1].split("```")[0]
    lmms_eval, vlmevalkit = block.split("\n\n# or VLMEvalKit")
    vlmevalkit = "\n".join(line.removeprefix("# ") for line in vlmevalkit.splitlines()[1:])
    assert ExternalEvalSettings(**yaml.safe_load(lmms_eval)["external_eval"]).model_type == "qwen2_5_vl"
    kit = ExternalEvalSettings(**yaml.safe_load(vlmevalkit)["external_eval"])
    assert external_eval.vlmevalkit_datasets(kit) == {
        "MMStar": "ImageMCQDataset",
        "AI2D_TEST": "ImageMCQDataset",
        "POPE": "ImageYORNDataset",
    }
