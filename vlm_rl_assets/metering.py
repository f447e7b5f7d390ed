"""What a pipeline step spends: wall and CPU seconds, accelerator seconds, peak memory, and the counts the stages
add as they work (tokens generated, tokens and examples trained, bytes written to the store, stale partial writes
swept).

The counts are process-wide and only grow, like the kernel's resource usage: a stage adds to them where the work
happens (the engines' batching loop, the store's writes, the caller of a training run) without a handle passed
down, and a `Meter` reads their difference over a step. Plain Python, so stage packages count without Dagster.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GENERATED_TOKENS = "generated_tokens"  # completion tokens of every engine call (eos included)
TRAINED_TOKENS = "trained_tokens"  # non-padding input tokens of every training step (prompt + chosen + rejected)
TRAIN_EXAMPLES = "train_examples"  # examples (DPO pairs, SFT samples) times the epochs they trained
STORE_BYTES_WRITTEN = "store_bytes_written"  # tables, images, pages and checkpoints written to a store
STALE_TEMP_SWEPT = "stale_temp_swept"  # partial writes a killed run left in a local store, removed (store/disk.py)
COUNTS = (GENERATED_TOKENS, TRAINED_TOKENS, TRAIN_EXAMPLES, STORE_BYTES_WRITTEN, STALE_TEMP_SWEPT)

_counts = dict.fromkeys(COUNTS, 0)
_lock = threading.Lock()  # a judge's or an upload's worker threads count too


def count(name: str, amount: int) -> None:
    """Add `amount` to the process's count `name` (one of COUNTS)."""
    if name not in _counts:
        raise KeyError(f"unknown count {name!r}; the counts are {COUNTS}")
    with _lock:
        _counts[name] += int(amount)


def counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


@dataclass(frozen=True)
class Usage:
    """What one step spent; these field names are the cost table's columns and (as `cost/<name>`) the metadata keys,
    on CPU and GPU alike."""

    wall_seconds: float
    cpu_seconds: float  # this process (all threads) plus its finished child processes (a launched DPO run)
    accelerator_seconds: float  # wall seconds times the accelerators held; 0.0 on CPU
    accelerators: int  # CUDA devices the step held (those it sees); 0 on CPU
    peak_memory_mib: float  # resident high-water mark of the step's process or of its largest finished child
    peak_accelerator_memory_mib: float  # torch's peak allocation on the busiest device, this process; 0.0 on CPU
    generated_tokens: int
    trained_tokens: int
    train_examples: int
    store_bytes_written: int
    stale_temp_swept: int


USAGE_FIELDS = tuple(field.name for field in dataclasses.fields(Usage))


class Meter:
    """Usage of the block it wraps: `with Meter(on_accelerator) as meter: ...`, then `meter.usage`.

    `on_accelerator`: the step holds the CUDA devices it sees for its whole wall time (a GPU step, on a CUDA config);
    then accelerator seconds are wall seconds times those devices. Peak memory is reset at the start where Linux
    allows it (`/proc/self/clear_refs`); elsewhere it is the process's high-water mark so far, exact per step under
    Dagster's default executor, which runs each step in its own process.
    """

    def __init__(self, on_accelerator: bool = False) -> None:
        self.on_accelerator = on_accelerator
        self.usage: Usage | None = None

    def __enter__(self) -> Meter:
        _reset_peak_memory()
        self._counts, self._cpu = counts(), _cpu_seconds()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._wall
        accelerators = _cuda_devices() if self.on_accelerator else 0
        spent = {name: total - self._counts[name] for name, total in counts().items()}
        self.usage = Usage(
            wall_seconds=wall,
            cpu_seconds=_cpu_seconds() - self._cpu,
            accelerator_seconds=wall * accelerators,
            accelerators=accelerators,
            peak_memory_mib=_peak_memory_mib(),
            peak_accelerator_memory_mib=_peak_cuda_memory_mib(),
            **spent,
        )


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # children already waited for
    return time.process_time() + children.ru_utime + children.ru_stime


def _reset_peak_memory() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident size
    except OSError:
        pass  # not Linux, or not allowed: the peak is the process's since it started
    torch = sys.modules.get("torch")  # never imported just for this: a step that loads no model uses no GPU
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for device in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mib() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = _linux_peak_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return max(own, children) * unit / 2**20


def _linux_peak_kib() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    lines = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(lines[0].split()[1]) if lines else None


def _cuda_devices() -> int:
    import torch  # heavy; a step on a CUDA config has loaded it already

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _peak_cuda_memory_mib() -> float:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())) / 2**20
