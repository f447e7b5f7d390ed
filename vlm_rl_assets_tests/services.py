"""Integration tests' external services: skipped with the reason on a workstation without them, but a failure in CI
(CI=true), where .ci/run installs them, so they can never silently not run there."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.util import find_spec

import pytest


def missing(what: str, how: str) -> None:
    """Skip (or in CI fail) because `what` is not here; `how` says how to provide it."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI must run this test; see .ci/run)")
    pytest.skip(message)


def postgres_url() -> str:
    url = os.environ.get("VLM_RL_TEST_POSTGRES_URL", "")
    if not url:
        missing(
            "PostgreSQL", "run `export VLM_RL_TEST_POSTGRES_URL=$(.ci/services.sh)` (installs and starts it, as root)"
        )
    return url


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        missing("Chromium", "apt-get install chromium (or run .ci/services.sh)")
    return path


DEPLOYMENT_IMAGES = ("vlm_rl_assets_user_code", "vlm_rl_assets_dagster", "vlm_rl_assets_postgres")


def docker_compose() -> list[str]:
    """The compose command of a running Docker engine that has docker/build_local.sh's images; asked for by
    VLM_RL_TEST_DOCKER=1, since the deployment test takes minutes and starts containers."""
    how = "as root: export VLM_RL_TEST_DOCKER=1, start Docker and run docker/build_local.sh (.ci/docker.sh does all three)"
    if os.environ.get("VLM_RL_TEST_DOCKER") != "1":
        missing("The Docker deployment test", how)
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True).returncode == 0:
            break
    else:
        missing("Docker Compose", how)
    if subprocess.run(["docker", "image", "inspect", *DEPLOYMENT_IMAGES], capture_output=True).returncode != 0:
        missing(f"Docker or one of the images {', '.join(DEPLOYMENT_IMAGES)}", how)
    return command


def vllm() -> None:
    """vLLM importable: its CPU build in .venv-vllm (`make test-vllm` installs it), or the `vllm` extra on a GPU."""
    if find_spec("vllm") is None:
        missing(
            "vLLM", "run `make test-vllm` (vLLM's CPU build in .venv-vllm), or pip install '.[vllm]' on a GPU machine"
        )
