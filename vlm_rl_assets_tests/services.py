"""Integration tests' external services: skipped with the reason on a workstation without them, but a failure in CI
(CI=true), where .ci/run installs them, so they can never silently not run there."""

from __future__ import annotations

import os
import shutil

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
        missing("PostgreSQL", "run `export VLM_RL_TEST_POSTGRES_URL=$(.ci/services.sh)` (installs and starts it, as root)")
    return url


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        missing("Chromium", "apt-get install chromium (or run .ci/services.sh)")
    return path
