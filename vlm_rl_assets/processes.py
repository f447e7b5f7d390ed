"""Child processes whose output streams to a log as it comes, so a Dagster run shows a long job (training, a
benchmark harness) while it runs, and whose last lines are kept for the error when it fails."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Exited:
    """How a streamed process ended: its exit status and its last output lines."""

    command: tuple[str, ...]
    returncode: int
    last_lines: tuple[str, ...]

    def summary(self) -> str:
        """The first words of every caller's error: `command` exited with N."""
        return f"`{shlex.join(self.command)}` exited with {self.returncode}"

    def tail(self) -> str:
        return "\n".join(self.last_lines)


def run_streamed(
    command: Sequence[str],
    log: Callable[[str], None],
    *,
    keep_lines: int,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Exited:
    """Run `command` (stderr merged into stdout, unbuffered Python), each output line to `log` without its newline.

    `env` replaces the environment (default: this process's). The child runs in its own process group, which is
    killed when the caller stops (an exception, a Dagster run terminated), so no worker outlives its run.
    """
    tail: deque[str] = deque(maxlen=keep_lines)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=cwd,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        for line in process.stdout:
            tail.append(line.rstrip())
            log(tail[-1])
        process.wait()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return Exited(tuple(command), process.returncode, tuple(tail))
