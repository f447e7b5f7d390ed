"""A user's dataset of real images is learnable with the embedded model: scikit-learn's handwritten digits as a
dataset category beside a synthetic one, through every stage of the digits category (a few minutes on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.digits import CHANCE, write_digits

REPO = Path(__file__).resolve().parents[1]
# The embedded default's bootstrap (per-category SFT cap, color's override, the stop rule) with fewer steps and
# prompts; digits keeps the default fractions: 0.2 bench, 0.1 dev, 0.4 bootstrap (about 720 SFT rows), 0.3 train.
CONFIG = """
max_bad_fraction: 0.1
model: {{path: embedded, device: cpu, torch_threads: 2}}
engine: {{batch_size: 64, max_new_tokens: 8, seed: 0, shard_prompts: 48}}
bootstrap:
  examples_override: {{color: 120}}
  dev_per_category: 50
  min_mean_accuracy: 0.6
  max_mean_accuracy: 0.8
  max_steps: 300
  eval_every: 50
training: {{batch_size: 8, epochs: 1}}
eval: {{max_new_tokens: 8, samples_per_prompt: 4}}
categories:
  color: {{source: 'synthetic:color', min_response_words: 2, n_train: 8, n_dev: 8, n_bench: 8}}
  digits: {{source: '{digits}', n_train: 48, n_dev: 50, n_bench: 100, samples_per_prompt: 6}}
"""


def test_the_embedded_base_learns_a_dataset_category_and_dpo_gets_right_and_wrong_rollouts(tmp_path):
    digits = write_digits(tmp_path / "digits")
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG.format(digits=digits))
    env = {**os.environ, "VLM_RL_CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "vlm_rl_assets_tests.pipeline_worker", str(tmp_path / "store"), "digits"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    base = metadata["base_model"]
    assert base["sft_rows"]["color"] == 120 and 600 <= base["sft_rows"]["digits"] <= 850
    assert set(base["dev_accuracy"]) == {"color", "digits"}
    assert base["dev_accuracy"]["digits"] >= max(0.2, 2 * CHANCE)

    store = LocalStore(tmp_path / "store")
    prompts = store.read_table("prompt_mixture", "digits", schemas.PROMPTS)
    assert "bootstrap" not in set(prompts["split"])  # SFT rows never roll out nor benchmark
    assert metadata["prompt_mixture"]["bootstrap_rows_left_out"] == base["sft_rows"]["digits"]
    scores = store.read_table("benchmark_scores", "digits", schemas.BENCHMARK_SCORES)
    [bench] = scores.filter((pl.col("model") == "base") & (pl.col("metric") == "accuracy")).rows(named=True)
    assert bench["n"] == 100 and bench["value"] >= 0.2 and bench["ci_low"] > CHANCE  # above chance on bench too

    pairs = store.read_table("judged_pairs", "digits", schemas.JUDGED_PAIRS)
    assert pairs.height > 0 and pairs["on_policy"].all()
    assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    rollouts = store.read_table("filtered_rollouts", "digits", schemas.FILTERED_ROLLOUTS)
    correct = dict(zip(zip(rollouts["prompt_id"], rollouts["response"]), rollouts["correct"]))
    assert all(
        correct[(p, c)] and not correct[(p, r)]
        for p, c, r in pairs.select("prompt_id", "chosen", "rejected").iter_rows()
    )
