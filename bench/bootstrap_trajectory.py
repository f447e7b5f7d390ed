"""The embedded base's dev accuracy as SFT goes on, per host kernels and bootstrap seed: what the stop band is chosen on.

    .venv/bin/python bench/bootstrap_trajectory.py --seed 0 --every 50 --steps 1200
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/bootstrap_trajectory.py --seed 1

Trains the default config's bootstrap with no early stop, checking greedy accuracy on dev (never bench) every
`--every` steps, and prints one JSON line per run: the host's CPU, the kernels torch used, and each check's step,
mean and per-category accuracy. Run it alone on the machine: it spins OpenMP threads as the demo does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "300000")  # as `make demo` runs the bootstrap (vlm_rl_assets/demo.py)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlm_rl_assets.bootstrap.embedded import bootstrap_embedded_model  # noqa: E402
from vlm_rl_assets.config import load_config  # noqa: E402


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=50, help="SFT steps between dev checks")
    parser.add_argument("--steps", type=int, default=1200)
    args = parser.parse_args()

    import torch

    config = load_config()
    torch.set_num_threads(config.model.torch_threads)
    # a band no check can reach: every check runs, training runs all --steps
    settings = config.bootstrap.model_copy(
        update={
            "seed": args.seed,
            "max_steps": args.steps,
            "eval_every": args.every,
            "eval_every_near": args.every,
            "min_mean_accuracy": 1.0,
            "max_mean_accuracy": 1.0,
        }
    )
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        report = bootstrap_embedded_model(
            Path(out),
            settings,
            config.synthetic_categories(),
            config.engine.batch_size,
            config.eval.max_new_tokens,
            lambda line: print(line, file=sys.stderr, flush=True),
        )
    checks = [
        {
            "step": c["step"],
            "mean": round(c["mean"], 3),
            **{k: round(v, 2) for k, v in c.items() if k not in ("step", "mean", "check")},
        }
        for c in report.checks
    ]
    print(
        json.dumps(
            {
                "cpu": cpu_model(),
                "kernels": torch.backends.cpu.get_cpu_capability(),
                "seed": args.seed,
                "seconds": round(time.monotonic() - start),
                "checks": checks,
            }
        )
    )


if __name__ == "__main__":
    main()
