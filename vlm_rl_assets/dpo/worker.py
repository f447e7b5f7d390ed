"""The one DPO training function, run in the caller's process or by each process `accelerate launch` starts:

    python -m vlm_rl_assets.dpo.worker JOB_DIR

It reads the job `dpo_job.write_job` left in JOB_DIR, trains with checkpoints in JOB_DIR/trainer (resuming from the
latest complete one), and the main process saves the model to the job's out_dir. Progress lines go to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

from vlm_rl_assets.dpo.job import TRAINER_DIR, read_job
from vlm_rl_assets.dpo.training import dpo_train
from vlm_rl_assets.model.train_result import TrainResult


def run_job(job_dir: str | Path, log: Callable[[str], None] | None = None) -> TrainResult:
    job, pairs = read_job(job_dir)
    torch.set_num_threads(job.torch_threads)
    return dpo_train(
        job.model_dir, job.out_dir, pairs, job.settings, job.loss, log=log, work_dir=Path(job_dir) / TRAINER_DIR
    )


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: python -m vlm_rl_assets.dpo.worker JOB_DIR (got {argv[1:]})")
    run_job(argv[1], log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main(sys.argv)
