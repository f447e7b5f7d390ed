"""One sharded rollout run in its own process, so a test can SIGKILL it mid-way.

    python -m vlm_rl_assets_tests.rollout_worker MODEL_DIR STORE_ROOT PAUSE_SECONDS

Pauses after each shard (a window to kill it in), then prints the reused and generated shard indices as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from PIL import Image

from vlm_rl_assets.rollouts.engine import SamplingParams
from vlm_rl_assets.rollouts.shards import sharded_rollouts
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table

CATEGORY = "color"
N_PROMPTS = 12
SHARD_PROMPTS = 2
SHARDS = N_PROMPTS // SHARD_PROMPTS
PARAMS = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=3)
COLOURS = ("red", "green", "blue", "yellow")


def main(model_dir: str, root: str, pause: float) -> None:
    import torch

    from vlm_rl_assets.rollouts.engine import HFEngine

    torch.set_num_threads(1)  # the same arithmetic in every process, so runs compare exactly
    prompts = prompt_table({f"p{i:02d}": ("text", COLOURS[i % 4]) for i in range(N_PROMPTS)}, CATEGORY)
    images = [(Image.new("RGB", (64, 64), COLOURS[i % 4]),) for i in range(N_PROMPTS)]
    run = sharded_rollouts(
        HFEngine(model_dir, batch_size=8),
        LocalStore(root),
        CATEGORY,
        prompts,
        images,
        PARAMS,
        "tiny-policy",
        shard_prompts=SHARD_PROMPTS,
        progress=lambda done, total: time.sleep(pause),
    )
    print(json.dumps({"reused": run.reused, "generated": run.generated}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
