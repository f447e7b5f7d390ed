"""Standard benchmarks on a checkpoint by lmms-eval or VLMEvalKit, for GPU deployments.

Neither harness is a dependency (both pull in CUDA-only stacks): the configured one is looked up with `find_spec`,
never imported here, and runs as a subprocess of this environment's Python, its output streamed line by line to a
`log` callback. Its results files become BENCHMARK_SCORES rows: category `external/<task>`, the harness's metric
name and value (fraction or percent, as the harness reports it), `n` when the harness records it, no CI.

Formats followed (read from the harnesses' sources, EvolvingLMMs-Lab/lmms-eval and open-compass/VLMEvalKit):

- lmms-eval, command line of `lmms_eval/__main__.py`: `--model <registered name> --model_args pretrained=<folder>,k=v
  --tasks a,b --batch_size N --output_path DIR [--log_samples]` (`lmms_eval/models/simple/qwen2_vl.py` registers
  `qwen2_vl` with `pretrained=`). Results: `DIR/<model name>/<date>_results.json`
  (`lmms_eval/loggers/evaluation_tracker.py`, `save_results_aggregated`; releases before the tracker wrote
  `DIR/.../results.json`): `results[task]` maps `"<metric>,<filter>"` to a value beside `"<metric>_stderr,<filter>"`
  and `alias`; `n-samples[task].effective` counts the documents scored (`lmms_eval/evaluator.py`).
- VLMEvalKit, `run.py` at the root of its git checkout (`vlmutil run` only reruns its own model zoo and finds
  run.py the same way, beside the package: `vlmeval/tools.py`) with `--config JSON --work-dir DIR`; the JSON is
  `{"model": {name: {"class": <vlmeval.vlm class>, "model_path": <folder>, ...}}, "data": {dataset: {"class":
  <vlmeval.dataset class>, "dataset": dataset}}}` (run.py's help; a config entry needs its class). Scores:
  `DIR/<name>/<eval id>/<name>_<dataset>[_<judge>]_{acc,score}.{csv,json}`, linked into `DIR/<name>/`
  (`get_intermediate_file_path` and `get_eval_file_format` in `vlmeval/smp/file.py`); a CSV is a table of text
  label columns (`split`, ...) and one numeric column per metric (`report_acc`), a JSON a (nested) dict of numbers.

Both harnesses log a failed task and still exit 0, so a missing results file is an error naming the output folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path

import polars as pl

from vlm_rl_assets.evaluation.settings import ExternalEvalSettings
from vlm_rl_assets.names import EXTERNAL_BENCHMARKS
from vlm_rl_assets.processes import run_streamed
from vlm_rl_assets.store import schemas

CATEGORY_PREFIX = "external/"
PACKAGE = {"lmms_eval": "lmms_eval", "vlmevalkit": "vlmeval"}
INSTALL = {
    "lmms_eval": "pip install lmms-eval (and the model's extras, e.g. pip install qwen-vl-utils)",
    "vlmevalkit": "git clone https://github.com/open-compass/VLMEvalKit && pip install -e ./VLMEvalKit",
}
DEFAULT_MODEL_TYPE = {"lmms_eval": "qwen2_vl", "vlmevalkit": "Qwen2VLChat"}
SCORE_FILE = re.compile(r"_(acc|score)\.(csv|json)$")
LOG_TAIL = 40


class HarnessNotInstalled(RuntimeError):
    """The configured harness cannot be found in this Python environment."""


class HarnessFailed(RuntimeError):
    """The harness exited with an error or left no results: the message holds its last output lines."""


def require_installed(harness: str) -> Path:
    """The harness package's folder; raises with the install command when it is not importable (never imports it)."""
    spec = find_spec(PACKAGE[harness])
    if spec is None or spec.origin is None:
        raise HarnessNotInstalled(
            f"external_eval.harness is {harness} but {PACKAGE[harness]} is not importable by {sys.executable}. "
            f"On a GPU deployment (the harness runs the model on CUDA) install it into this environment: "
            f"{INSTALL[harness]}. Or set external_eval.harness: none."
        )
    return Path(spec.origin).parent


def vlmevalkit_run_script() -> Path:
    """VLMEvalKit's run.py, beside the `vlmeval` package of an editable install of its git checkout."""
    run_py = require_installed("vlmevalkit").parent / "run.py"
    if not run_py.is_file():
        raise HarnessNotInstalled(
            f"vlmeval is installed but {run_py} is missing: VLMEvalKit's run.py ships only in its git checkout. "
            f"Install it editable: {INSTALL['vlmevalkit']}"
        )
    return run_py


def model_type(settings: ExternalEvalSettings) -> str:
    return settings.model_type or DEFAULT_MODEL_TYPE[settings.harness]


def lmms_eval_command(settings: ExternalEvalSettings, model_dir: Path, output_dir: Path) -> list[str]:
    """`python -m lmms_eval` on `model_dir`, results under `output_dir`."""
    model_args = ",".join(f"{key}={value}" for key, value in {"pretrained": model_dir, **settings.model_args}.items())
    return [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        model_type(settings),
        "--model_args",
        model_args,
        "--tasks",
        ",".join(settings.tasks),
        "--batch_size",
        str(settings.batch_size),
        "--output_path",
        str(output_dir),
        *(["--log_samples"] if settings.log_samples else []),
        *settings.extra_args,
    ]


def vlmevalkit_datasets(settings: ExternalEvalSettings) -> dict[str, str]:
    """Dataset name -> its vlmeval.dataset class, from tasks written `<class>:<dataset>`."""
    return {dataset: cls for cls, dataset in (task.split(":") for task in settings.tasks)}


def vlmevalkit_config(settings: ExternalEvalSettings, name: str, model_path: Path) -> dict:
    """The `--config` JSON: one model entry called `name` and one entry per dataset."""
    model = {"class": model_type(settings), "model_path": str(model_path), **settings.model_args}
    data = {dataset: {"class": cls, "dataset": dataset} for dataset, cls in vlmevalkit_datasets(settings).items()}
    return {"model": {name: model}, "data": data}


def vlmevalkit_command(run_py: Path, config_file: Path, work_dir: Path, settings: ExternalEvalSettings) -> list[str]:
    return [
        sys.executable,
        str(run_py),
        "--config",
        str(config_file),
        "--work-dir",
        str(work_dir),
        *settings.extra_args,
    ]


def architecture_link(model_dir: Path, name: str, folder: Path) -> Path:
    """A link to `model_dir` named after its config.json model_type: VLMEvalKit's Qwen2VLChat picks Qwen2-VL or
    Qwen2.5-VL from the text of the path (`vlmeval/vlm/qwen2_vl/model.py`), which a checkpoint folder of this
    pipeline (`policy_checkpoint/mixture`) does not carry."""
    architecture = json.loads((model_dir / "config.json").read_text()).get("model_type", "model")
    link = folder / f"{architecture}-{name}"
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link


def run_harness(
    command: list[str], log: Callable[[str], None], cwd: Path | None = None, env: dict | None = None
) -> None:
    """Run `command`, each output line to `log`; a stopped run kills the harness's process group."""
    log(f"running {shlex.join(command)}")
    exited = run_streamed(command, log, keep_lines=LOG_TAIL, cwd=cwd, env=env)
    if exited.returncode != 0:
        raise HarnessFailed(f"{exited.summary()}. Its last lines:\n{exited.tail()}")


def evaluate(
    settings: ExternalEvalSettings, name: str, model_dir: Path, work_dir: Path, log: Callable[[str], None]
) -> pl.DataFrame:
    """Run the configured harness on the checkpoint `model_dir` in a cleared `work_dir`; its BENCHMARK_SCORES rows
    with model = `name`."""
    shutil.rmtree(work_dir, ignore_errors=True)  # results of an earlier run must not pass for this one's
    work_dir.mkdir(parents=True)
    if settings.harness == "lmms_eval":
        require_installed("lmms_eval")
        run_harness(lmms_eval_command(settings, model_dir, work_dir), log)
        return lmms_eval_scores(work_dir, name)
    run_py = vlmevalkit_run_script()
    config_file = work_dir / "config.json"
    config_file.write_text(json.dumps(vlmevalkit_config(settings, name, architecture_link(model_dir, name, work_dir))))
    env = {k: v for k, v in os.environ.items() if k != "MMEVAL_ROOT"}  # it would override --work-dir
    run_harness(vlmevalkit_command(run_py, config_file, work_dir, settings), log, cwd=run_py.parent, env=env)
    return vlmevalkit_scores(work_dir, name, list(vlmevalkit_datasets(settings)))


def lmms_eval_scores(output_dir: Path, model: str) -> pl.DataFrame:
    """Rows from the newest lmms-eval results file under `output_dir`: every numeric `<metric>,<filter>` of every
    task (the metric alone for the default filter `none`), stderr and alias left out."""
    files = sorted(output_dir.rglob("*results.json"), key=lambda path: path.stat().st_mtime)
    if not files:
        raise HarnessFailed(
            f"lmms-eval wrote no results file under {output_dir}: it logs a failed task and still exits 0. "
            "See its output above (an unknown task name, a missing dataset, an out-of-memory error)."
        )
    results = json.loads(files[-1].read_text())
    counts = results.get("n-samples", {})
    rows = []
    for task, metrics in results["results"].items():
        n = counts.get(task, {}).get("effective")
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if _is_number(value) and not metric.endswith("_stderr"):
                rows.append(_row(task, model, metric if filter_name in ("", "none") else key, value, n))
    return _scores(rows)


def vlmevalkit_scores(work_dir: Path, name: str, datasets: list[str]) -> pl.DataFrame:
    """Rows from VLMEvalKit's score files of model `name` on `datasets` under `work_dir`. A file belongs to the
    longest dataset name it starts with (MMBench_DEV_EN_V11 is not MMBench_DEV_EN); with several files for one
    dataset each metric is prefixed by its file's suffix (`gpt-4-turbo_score/Overall`)."""
    files: dict[str, list[Path]] = defaultdict(list)
    for path in sorted((work_dir / name).rglob(f"{name}_*")):
        owners = [d for d in datasets if path.name.startswith(f"{name}_{d}_")]
        if owners and SCORE_FILE.search(path.name) and not path.is_symlink():  # the links repeat the eval id's files
            files[max(owners, key=len)].append(path)
    missing = [d for d in datasets if d not in files]
    if missing:
        raise HarnessFailed(
            f"VLMEvalKit wrote no score file for {missing} under {work_dir / name}: it logs a failed dataset and "
            "carries on. See its output above (a wrong dataset class in external_eval.tasks, a download or judge error)."
        )
    rows = []
    for dataset, paths in files.items():
        for path in paths:
            prefix = path.name[len(f"{name}_{dataset}_") :].rsplit(".", 1)[0] + "/" if len(paths) > 1 else ""
            rows += [_row(dataset, name, prefix + metric, value, None) for metric, value in _file_metrics(path)]
    return _scores(rows)


def _file_metrics(path: Path) -> Iterator[tuple[str, float]]:
    """(metric, value) of a score file: a JSON's numbers by their key path, a CSV's numeric cells as
    `<row's text labels>/<column>` (`split` "none" is no label)."""
    if path.suffix == ".json":
        yield from _flatten(json.loads(path.read_text()))
        return
    table = pl.read_csv(path, infer_schema_length=None)
    labels = [column for column, dtype in table.schema.items() if not dtype.is_numeric()]
    for row in table.iter_rows(named=True):
        label = "/".join(str(row[c]) for c in labels if row[c] not in (None, "none"))
        for column in table.columns:
            if column not in labels and row[column] is not None:
                yield (f"{label}/{column}" if label else column), float(row[column])


def _flatten(value: object, key: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{key}/{k}" if key else str(k))
    elif _is_number(value):
        yield key, float(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _row(task: str, model: str, metric: str, value: float, n: int | None) -> tuple:
    return (CATEGORY_PREFIX + task, model, metric, float(value), n, None, None)


def _scores(rows: list[tuple]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=schemas.BENCHMARK_SCORES, orient="row")
    return schemas.check(df, schemas.BENCHMARK_SCORES, EXTERNAL_BENCHMARKS)
