"""The Dagster UI in headless Chromium: dagster-webserver on loopback shows every asset, the category partitions
and the asset graph, without the first-open community dialog; the graph's screenshot is saved to
vlm_rl_assets_tests/artifacts/asset_graph.png."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from vlm_rl_assets.config import load_config
from vlm_rl_assets_tests.graphs import ASSETS
from vlm_rl_assets_tests.services import chromium

ARTIFACTS = Path(__file__).parent / "artifacts"
REPO = Path(__file__).parent.parent
# As root on a machine with a closed network: no sandbox, no GPU, no calls home
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=15000",
)
LINEAGE = "/assets/benchmark_scores?view=lineage&lineageScope=upstream&lineageDepth=10"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dagster_webserver(home: Path, **env: str) -> Iterator[str]:
    """dagster-webserver on the code location and the instance in `home` (its dagster.yaml the shipped one: no
    telemetry, no welcome dialog), with `env` added; yields its base URL."""
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    command = [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port)]
    log = (home / "webserver.log").open("w")
    server = subprocess.Popen(
        [*command, "-m", "vlm_rl_assets.definitions"],
        env={**os.environ, "DAGSTER_HOME": str(home), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its code server child goes down with it
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGTERM)
            pytest.fail(f"dagster-webserver did not come up: {(home / 'webserver.log').read_text()[-3000:]}")
        time.sleep(1)
    try:
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """dagster-webserver on the code location, on an empty instance; yields its base URL."""
    with dagster_webserver(tmp_path_factory.mktemp("ui_home")) as url:
        yield url


def browse(page: str, tmp_path: Path, *action: str) -> str:
    """Run headless Chromium on `page` with `action` (--dump-dom, --screenshot=...) in a new profile; its stdout."""
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, page],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def visible_text(dom: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def test_catalog_lists_every_asset(webserver, tmp_path):
    text = visible_text(browse(f"{webserver}/assets", tmp_path, "--dump-dom"))
    missing = [a.key.to_user_string() for a in ASSETS if a.key.to_user_string() not in text]
    assert not missing, f"not in the catalog: {missing}; page: {text[:2000]}"
    assert not welcome_dialog(text), text[:2000]  # the shipped dagster.yaml's nux: enabled: false


def welcome_dialog(text: str) -> bool:
    """Whether Dagster's first-open dialog (join the community, sign up for the newsletter) is on the page."""
    return "newsletter" in text.lower() or "join the dagster community" in text.lower()


def test_partitions_page_shows_every_category(webserver, tmp_path):
    text = visible_text(browse(f"{webserver}/assets/rollouts?view=partitions", tmp_path, "--dump-dom"))
    categories = list(load_config().categories)
    assert f"{len(categories)} Partitions" in text and all(c in text for c in categories), text[:2000]


def test_asset_graph_renders_and_is_saved(webserver, tmp_path):
    text = visible_text(browse(f"{webserver}{LINEAGE}", tmp_path, "--dump-dom"))
    upstream = ["base_model", "prompt_mixture", "rollouts", "filtered_rollouts", "judged_pairs", "dpo_checkpoint"]
    assert all(name in text for name in ["benchmark_scores", *upstream]), text[:2000]
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "asset_graph.png"
    screenshot.unlink(missing_ok=True)
    browse(f"{webserver}{LINEAGE}", tmp_path, f"--screenshot={screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
