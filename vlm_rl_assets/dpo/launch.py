"""Runs a DPO job: in the caller's process when it has one process and no sharding; otherwise the same worker
under `accelerate launch --config_file` on the accelerate config the job folder holds (`training/sharding.py`: DDP,
FSDP2 or DeepSpeed ZeRO-3; torchrun underneath: gloo on CPU, NCCL on GPUs), in a subprocess whose output lines stream
to the caller's log, so the Dagster run shows the training as it goes."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from vlm_rl_assets.dpo.job import TRAINER_DIR, DPOJob
from vlm_rl_assets.dpo.worker import run_job
from vlm_rl_assets.model.train_result import TrainResult, read_result
from vlm_rl_assets.processes import run_streamed
from vlm_rl_assets.training.sharding import CONFIG_FILE, launches, require_backend

WORKER = "vlm_rl_assets.dpo.worker"
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception)\b.*:")  # a traceback's last line: what went wrong in a worker


class TrainingLaunchError(RuntimeError):
    """The launched training processes failed: the message holds their last output lines."""


def launch_command(job_dir: str | Path) -> list[str]:
    """`accelerate launch` of the worker as the job folder's accelerate config says (processes, sharding, precision)."""
    config = Path(job_dir) / CONFIG_FILE
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "-m",
        WORKER,
        str(job_dir),
    ]


def launch_job(job_dir: str | Path, job: DPOJob, device: str, log: Callable[[str], None]) -> TrainResult:
    """Train the job in `job_dir` on `job.settings.num_processes` processes on `device` ("cpu", or GPUs: one per process)."""
    if not launches(job.settings.sharding, job.settings.num_processes):
        return run_job(job_dir, log)
    require_backend(job.settings.sharding)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"  # the Trainer then sets up a gloo process group on CPU
    errors: list[str] = []  # torchrun's failure summary ends the output; the worker's own exception comes earlier

    def watch(line: str) -> None:
        log(line)
        if not errors and _EXCEPTION.match(line):
            errors.append(line)

    # a stopped run kills the workers (their process group); the rerun resumes from the last checkpoint
    exited = run_streamed(launch_command(job_dir), watch, keep_lines=30, env=env)
    if exited.returncode != 0:
        raise TrainingLaunchError(
            f"{exited.summary()}: {errors[0] if errors else 'see its last lines'}\n"
            f"Its last lines:\n{exited.tail()}\n"
            f"Fix the cause above and rerun: training resumes from the last checkpoint in {Path(job_dir) / TRAINER_DIR}"
        )
    return read_result(job.out_dir)
