"""A base that says what it cannot learn: a user's 300 handwritten digits (no split column) beside `color` on the
embedded model, with a short bootstrap, leave the digits at chance; base_model warns naming the category and what to
do, and prompt_mixture and rollouts of the digits refuse until `allow_chance_base: true`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vlm_rl_assets_tests.digits import write_digits

REPO = Path(__file__).resolve().parents[1]
ROWS = 300  # about 60 bench, 30 dev, 120 bootstrap and 90 train rows, by the hash
CONFIG = """
max_bad_fraction: 0.1
model: {{path: embedded, device: cpu, torch_threads: 2}}
engine: {{batch_size: 64, max_new_tokens: 8, seed: 0, shard_prompts: 48}}
bootstrap: {{examples_override: {{color: 120}}, dev_per_category: 30, batch_size: 16, max_steps: 40, eval_every: 40}}
eval: {{max_new_tokens: 8}}
categories:
  color: {{source: 'synthetic:color', min_response_words: 2, n_train: 8, n_dev: 8, n_bench: 8}}
  digits: {{source: '{digits}', n_train: 8, samples_per_prompt: 2{allow}}}
"""


def test_a_category_at_chance_is_named_by_base_model_and_refused_downstream_until_allowed(tmp_path):
    written = write_digits(tmp_path / "all")
    digits = tmp_path / "all" / "digits_300.jsonl"
    digits.write_text("".join(written.read_text().splitlines(keepends=True)[:ROWS]))
    config, allowing = tmp_path / "pipeline.yaml", tmp_path / "allowing.yaml"
    config.write_text(CONFIG.format(digits=digits, allow=""))
    allowing.write_text(CONFIG.format(digits=digits, allow=", allow_chance_base: true"))
    env = {**os.environ, "VLM_RL_CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "vlm_rl_assets_tests.chance_worker",
        str(tmp_path / "store"),
        "digits",
        str(allowing),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    base = out["base_model"]["metadata"]
    assert base["chance_verdict"]["digits"] == "at_chance" and "digits" in base["at_chance"]
    assert base["sft_rows"]["digits"] < 200 and 0 < base["chance"]["digits"] < 0.35
    [warning] = [w for w in out["base_model"]["warnings"] if "'digits'" in w]
    assert warning.startswith("base_model: category 'digits' is at chance on the base model: dev accuracy ")
    for advice in (
        "give it more bootstrap rows and steps (it had",
        "categories.digits.bootstrap_fraction",
        "bootstrap.max_steps",
        "56x56",
        "set model.path to an SFT model of your own",
        "categories.digits.allow_chance_base: true",
    ):
        assert advice in warning

    for asset in ("prompt_mixture", "rollouts"):
        refused = out[f"{asset}/refused"]["failure"]
        assert refused.startswith(f"{asset}[digits] refused: category 'digits' is at chance on the base model")
        assert "allow_chance_base: true" in refused
    assert out["prompt_mixture/allowed"]["metadata"]["train_prompts"] == 8
    assert out["rollouts/allowed"]["metadata"]["rows"] == 8 * 2
