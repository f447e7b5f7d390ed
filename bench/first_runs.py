"""The first run a user sees, on this host's kernels and on AVX2's, with two bootstrap seeds: whether its outcome
depends on the machine.

    .venv/bin/python bench/first_runs.py                          # the 2 x 2 grid: default/avx2 kernels x seeds 0, 1
    .venv/bin/python bench/first_runs.py --kernels default --seeds 0

Each run is `python -m vlm_rl_assets.demo` on the default config (only `bootstrap.seed` set), with a fresh store and
Dagster instance in a folder of its own under --runs (kept: its pipeline.yaml and dagster_home run the experiments on
that base), alone on the machine. Prints one markdown row per run: the host's CPU, the
kernels torch used, the seed, the bootstrap's steps and dev mean (the band it stops in), the bench means of base and
policy, the paired delta with its 95% CI, and the wall time of the pipeline (install not included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bootstrap_trajectory import cpu_model  # noqa: E402
from vlm_rl_assets.config import DEFAULT_CONFIG_PATH  # noqa: E402

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# read from the finished run's instance and store, in the run's own environment
SUMMARY = """
import json, dagster as dg, polars as pl, torch
from vlm_rl_assets.demo import score_table
from vlm_rl_assets.evaluation.stats import OVERALL
from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import round_key
event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("base_model"))
meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
config = configured()
store, CATEGORIES, ROUNDS = PipelineResource(config).store, list(config.categories), config.rounds.count
deltas = store.read_table("release_report", round_key("deltas", ROUNDS), schemas.BENCHMARK_DELTAS)
overall = deltas.filter(pl.col("category") == OVERALL).row(0, named=True)
scores = score_table(store, CATEGORIES, config.training.algorithm, ROUNDS)
print(json.dumps({"kernels": torch.backends.cpu.get_cpu_capability(), "sft_steps": meta["sft_steps"],
    "dev_mean": meta["dev_accuracy_mean"], "base": scores["base"].mean(), "policy": scores["policy"].mean(),
    "delta": overall["delta"], "ci": [overall["ci_low"], overall["ci_high"]],
    "per_category": dict(zip(scores["category"], scores["policy_delta"]))}))
"""


def first_run(folder: Path, kernels: str, seed: int) -> dict:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["bootstrap"]["seed"] = seed
    config["storage"]["root"] = str(folder / "data")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "dagster_home").mkdir()
    (folder / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "VLM_RL_CONFIG": str(path),
        "DAGSTER_HOME": str(folder / "dagster_home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(AVX2 if kernels == "avx2" else {}),
    }
    start = time.monotonic()
    demo = subprocess.run(
        [sys.executable, "-m", "vlm_rl_assets.demo"], cwd=REPO, env=env, capture_output=True, text=True
    )
    seconds = time.monotonic() - start
    (folder / "demo.log").write_text(demo.stdout + demo.stderr)
    if demo.returncode:
        raise SystemExit(f"the demo failed ({kernels}, seed {seed}):\n{demo.stderr[-3000:]}")
    summary = subprocess.run(
        [sys.executable, "-c", SUMMARY], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return {"seed": seed, "seconds": seconds, **json.loads(summary.stdout.strip().splitlines()[-1])}


def row(run: dict, cpu: str) -> str:
    points = lambda x: f"{100 * x:+.1f}"  # noqa: E731
    minutes, seconds = divmod(round(run["seconds"]), 60)
    worst = min(run["per_category"].items(), key=lambda item: item[1])
    return (
        f"| {cpu} | {run['kernels']} | {run['seed']} | {run['sft_steps']} | {run['dev_mean']:.3f} | {run['base']:.3f} | "
        f"{run['policy']:.3f} | {points(run['delta'])} [{points(run['ci'][0])}, {points(run['ci'][1])}] | "
        f"{worst[0]} {points(worst[1])} | {minutes} min {seconds:02d} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", default="default,avx2", help="comma-separated: default, avx2")
    parser.add_argument("--seeds", default="0,1", help="comma-separated bootstrap seeds")
    parser.add_argument("--runs", type=Path, default=Path(tempfile.gettempdir()) / "first_runs")
    args = parser.parse_args()
    cpu = cpu_model()
    print(
        "| host CPU | kernels | bootstrap seed | SFT steps | base dev mean | base bench | policy bench | policy - base "
        "(points, 95% CI) | worst category | pipeline wall time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kernels in args.kernels.split(","):
        for seed in map(int, args.seeds.split(",")):
            folder = args.runs / f"{kernels}-seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            print(row(first_run(folder, kernels, seed), cpu), flush=True)


if __name__ == "__main__":
    main()
