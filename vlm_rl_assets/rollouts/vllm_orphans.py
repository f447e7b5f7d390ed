"""vLLM engine processes a killed run left behind, found and ended before the next engine opens.

vLLM's engine core watches no parent (vLLM #55510 and #34643, open; its workers do watch the engine core): when the
process that opened an `LLM` dies without closing it (SIGKILL, the OOM killer, a preempted node), `VLLM::EngineCore`
and its workers live on, holding their share of the GPU, and the rerun's engine is refused for want of memory.
Measured on vLLM's CPU build: both were still alive minutes after a rollout step was SIGKILLed, the worker
busy-waiting on its queue at most of a core. An orphan is a process of this user that vLLM titled
`VLLM::EngineCore` and whose parent is init (pid 1): no process can reach it again.
"""

from __future__ import annotations

import logging
import os
import time

import psutil

ENGINE_CORE_TITLE = "VLLM::EngineCore"  # vLLM's setproctitle; /proc's comm cuts it to 15 characters, cmdline does not

log = logging.getLogger(__name__)


def orphaned_engines() -> list[psutil.Process]:
    """This user's orphaned vLLM engine cores and their workers."""
    orphans = []
    for process in psutil.process_iter(["cmdline", "ppid", "uids"]):
        info = process.info
        title = " ".join(info["cmdline"] or []).strip()
        if (
            title.startswith(ENGINE_CORE_TITLE)
            and info["ppid"] == 1
            and info["uids"]
            and info["uids"].real == os.getuid()
        ):
            try:
                orphans += [*process.children(recursive=True), process]
            except psutil.NoSuchProcess:
                continue
    return orphans


def reap_orphaned_engines() -> None:
    """Kill every orphaned vLLM engine core of this user, with its workers, saying so in the log."""
    orphans = orphaned_engines()
    for process in orphans:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + 30
    while any(running(process) for process in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    if orphans:
        pids = ", ".join(str(p.pid) for p in orphans)
        log.warning(f"ended {len(orphans)} vLLM engine processes a killed run left holding memory (pids {pids})")


def running(process: psutil.Process) -> bool:
    """Running and not a zombie (a killed orphan waits for init to reap it, which some containers' init never does)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
