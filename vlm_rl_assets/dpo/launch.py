"""Runs a DPO job in `num_processes` processes: one trains right here; more run the same worker under
`accelerate launch` (torchrun underneath: gloo on CPU, NCCL on GPUs) in a subprocess whose output lines stream to
the caller's log, so the Dagster run shows the training as it goes."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from vlm_rl_assets.dpo.job import TRAINER_DIR, DPOJob
from vlm_rl_assets.dpo.worker import run_job
from vlm_rl_assets.dpo.training import TrainResult, read_result

WORKER = "vlm_rl_assets.dpo.worker"
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception)\b.*:")  # a traceback's last line: what went wrong in a worker


class TrainingLaunchError(RuntimeError):
    """The launched training processes failed: the message holds their last output lines."""


def launch_command(job_dir: str | Path, num_processes: int) -> list[str]:
    """`accelerate launch` of the worker on `num_processes` local processes (a free rendezvous port each time)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        "-m", WORKER, str(job_dir),
    ]  # fmt: skip


def launch_job(job_dir: str | Path, job: DPOJob, device: str, log: Callable[[str], None]) -> TrainResult:
    """Train the job in `job_dir` on `job.num_processes` processes on `device` ("cpu", or GPUs: one per process)."""
    if job.num_processes == 1:
        return run_job(job_dir, log)
    command = launch_command(job_dir, job.num_processes)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"  # the Trainer then sets up a gloo process group on CPU
    tail: deque[str] = deque(maxlen=30)
    first_error = None  # torchrun's failure summary ends the output; the worker's own exception comes earlier
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        for line in process.stdout:
            tail.append(line.rstrip())
            log(tail[-1])
            if first_error is None and _EXCEPTION.match(tail[-1]):
                first_error = tail[-1]
        process.wait()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)  # a stopped run stops its processes; the rerun resumes
        raise
    if process.returncode != 0:
        last = "\n".join(tail)
        raise TrainingLaunchError(
            f"`{shlex.join(command)}` exited with {process.returncode}: {first_error or 'see its last lines'}\n"
            f"Its last lines:\n{last}\n"
            f"Fix the cause above and rerun: training resumes from the last checkpoint in {Path(job_dir) / TRAINER_DIR}"
        )
    return read_result(job.out_dir)
