"""A user's dataset of real images on the embedded default: scikit-learn's handwritten digits as a sixth category
beside the default's five synthetic ones, default sizes throughout (bootstrap, rollouts, DPO, benchmark).

    .venv/bin/python bench/digits.py                 # base_model, then every stage of the digits category
    .venv/bin/python bench/digits.py --keep DIR      # ...in DIR (kept), e.g. to inspect the verdicts afterwards

Prints the base model's bootstrap (steps, seconds, dev accuracy and SFT rows per category), the digits category's
splits and pairs, and its benchmark: base and dpo greedy accuracy with 95% CIs and the paired delta's CI, on bench.
The digits are 1797 8x8 scans, upscaled to 56x56 (vlm_rl_assets_tests/digits.py); ten classes: chance is 0.1.
Runs in a subprocess (the config's categories are the partitions); timings include a shared machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlm_rl_assets.config import DEFAULT_CONFIG_PATH  # noqa: E402
from vlm_rl_assets_tests.digits import CHANCE, write_digits  # noqa: E402


def run(folder: Path) -> dict:
    digits = write_digits(folder / "digits")
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["categories"]["digits"] = {"source": str(digits), "template": "plain"}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "VLM_RL_CONFIG": str(path), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "vlm_rl_assets_tests.pipeline_worker", str(folder / "store"), "digits"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    metadata["wall_seconds"] = round(time.monotonic() - start, 1)
    return metadata


def report(metadata: dict) -> str:
    base, prompts, pairs, bench = (
        metadata[a] for a in ("base_model", "prompt_mixture", "judged_pairs", "benchmark_scores")
    )
    ci = lambda pair: f"[{pair[0]:.3f}, {pair[1]:.3f}]"  # noqa: E731
    return "\n".join(
        [
            f"bootstrap: {base['sft_steps']} steps in {base['sft_seconds']} s; SFT rows {base['sft_rows']}",
            f"  dev accuracy { ({c: round(a, 3) for c, a in base['dev_accuracy'].items()}) }",
            f"digits splits: train {prompts['train_prompts']}, dev {prompts['dev_prompts']}, bench {prompts['bench_prompts']}, "
            f"bootstrap (left out) {prompts['bootstrap_rows_left_out']}; pairs {pairs['pairs']}",
            f"digits bench (n={bench['n']}, chance {CHANCE}): base {bench['base_accuracy']:.3f} {ci(bench['base_accuracy_ci'])}, "
            f"dpo {bench['dpo_accuracy']:.3f} {ci(bench['dpo_accuracy_ci'])}, "
            f"delta {100 * bench['delta_accuracy']:+.1f} points, paired CI {ci(bench['delta_accuracy_ci'])}",
            f"wall: {metadata['wall_seconds']} s (base_model and the digits stages)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        print(report(run(args.keep)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(report(run(Path(tmp))))


if __name__ == "__main__":
    main()
