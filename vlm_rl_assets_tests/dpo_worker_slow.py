"""The DPO worker (`run_job`, as `accelerate launch` runs it) slowed down so a test can SIGKILL it mid-way.

    python -m vlm_rl_assets_tests.dpo_worker_slow JOB_DIR PAUSE_SECONDS

Pauses after each progress line (a window to kill it in), then prints the steps taken and the step it resumed from.
"""

from __future__ import annotations

import json
import sys
import time

from vlm_rl_assets.dpo.worker import run_job


def main(job_dir: str, pause: float) -> None:
    def log(line: str) -> None:
        print(line, flush=True)
        time.sleep(pause)

    result = run_job(job_dir, log)
    print(json.dumps({"steps": result.steps, "resumed_from": result.resumed_from}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
