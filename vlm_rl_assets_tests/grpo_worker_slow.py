"""A GRPO run (`grpo_train` in its keyed work folder, as `train_prompts` runs it) slowed down so a test can SIGKILL
it mid-way; its reward scores completions by length, so groups have reward spread and the weights move.

    python -m vlm_rl_assets_tests.grpo_worker_slow MODEL_DIR WORK_ROOT OUT_DIR PAUSE_SECONDS

Pauses after each progress line (a window to kill it in), then prints the steps taken, the step it resumed from and
its work folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from vlm_rl_assets.grpo.reward import completion_text
from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.grpo.training import RLPrompt, grpo_train, grpo_work_folder
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets_tests.helpers import colour_pairs

# 6 prompts, 2 per step: 3 steps an epoch, so a run resumed from step 4 resumes in its second epoch
SETTINGS = TrainingSettings(max_steps=5, save_steps=2, log_every=1, learning_rate=1e-3)
GRPO = GRPOSettings(num_generations=2, prompts_per_step=2, max_completion_length=6)
PROMPTS = 6


def length_reward(completions: list, **columns: object) -> list[float]:
    return [len(completion_text(c)) % 5 / 4 for c in completions]


def prompts() -> list[RLPrompt]:
    return [RLPrompt(f"p{i}", pair.prompt_text, pair.images) for i, pair in enumerate(colour_pairs(PROMPTS, seed=3))]


def work_folder(model_dir: str | Path, work_root: str | Path) -> Path:
    """The run's work folder under `work_root`, as `train_prompts` keys it."""
    return grpo_work_folder(work_root, model_fingerprint(model_dir), prompts(), ["length"], SETTINGS, GRPO)


def main(model_dir: str, work_root: str, out_dir: str, pause: float) -> None:
    torch.set_num_threads(1)

    def log(line: str) -> None:
        print(line, flush=True)
        time.sleep(pause)

    work_dir = work_folder(model_dir, work_root)
    result = grpo_train(model_dir, out_dir, prompts(), [length_reward], SETTINGS, GRPO, log, work_dir)
    print(json.dumps({"steps": result.steps, "resumed_from": result.resumed_from, "work_dir": str(work_dir)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
