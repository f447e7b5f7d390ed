"""Acceptance: a real (tiny) pipeline run's review page in headless Chromium, driven over the DevTools protocol as a
person would: the page shows images and both halves of a pair, verdicts are labelled with the page's own keys and
buttons, and the judge_calibration check then reports F1 on exactly those labels. The page's screenshot is saved to
vlm_rl_assets_tests/artifacts/review_page.png."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from websockets.sync.client import connect

from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.reviewing.labels import read_human_labels
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.services import chromium
from vlm_rl_assets_tests.test_ui import ARTIFACTS, free_port

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
CATEGORY = "color"
STAGES = ["prompt_mixture", "rollouts", "filtered_rollouts", "judged_pairs"]
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
)


def config_file(folder: Path, name: str, **category) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["categories"][CATEGORY] |= category
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def materialize(config: Path, root: Path, selection: list[str], partition: str | None) -> dg.ExecuteInProcessResult:
    resources = {"pipeline": PipelineResource.from_file(str(config), str(root))}
    return dg.materialize(
        everything(resources), selection=selection, partition_key=partition, resources=resources, raise_on_error=False
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The color category through judged_pairs on the tiny two-category config, without calibration labels yet."""
    folder = tmp_path_factory.mktemp("review_run")
    root, config = folder / "store", config_file(folder, "unlabelled.yaml")
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))):
        assert materialize(config, root, ["base_model"], None).success
        run = materialize(config, root, STAGES, CATEGORY)
    assert run.success
    return folder, root, run


@pytest.fixture(scope="module")
def server(pipeline_run):
    """`python -m vlm_rl_assets.review serve` on the run's store, labels required (4) for its calibration check."""
    folder, root, _ = pipeline_run
    config = config_file(folder, "human.yaml", calibration_labels="human", calibration_min_labels=4)
    port = free_port()
    env = {**os.environ, "VLM_RL_CONFIG": str(config), "VLM_RL_REVIEWER": "acceptance"}
    command = [sys.executable, "-m", "vlm_rl_assets.review", "--root", str(root), "serve", "--port", str(port)]
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: process.poll() is not None or _answers(url), "the review server to start")
    assert process.poll() is None, (folder / "server.log").read_text()
    yield url, config
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


class Tab:
    """One Chromium page over the DevTools protocol: evaluate JavaScript, press keys, take screenshots."""

    def __init__(self, websocket_url: str) -> None:
        self.socket = connect(websocket_url, max_size=None, open_timeout=30)
        self.calls = 0

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.calls:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def press(self, key: str) -> None:
        """A key press as the keyboard sends it: the page's own keydown handler receives it."""
        code = ord(key.upper())
        self.call(
            "Input.dispatchKeyEvent",
            type="keyDown",
            key=key,
            code=f"Key{key.upper()}",
            text=key,
            windowsVirtualKeyCode=code,
        )
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=f"Key{key.upper()}", windowsVirtualKeyCode=code)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium_profile")
    process = subprocess.Popen(
        [chromium(), *BROWSER_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    active = profile / "DevToolsActivePort"  # Chromium writes its debugging port here
    wait_for(
        lambda: process.poll() is not None or (active.is_file() and active.read_text().count("\n") >= 1), "Chromium"
    )
    port = active.read_text().split()[0]
    [target] = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
    tab = Tab(target["webSocketDebuggerUrl"])
    yield tab
    tab.socket.close()
    process.terminate()
    process.wait(timeout=30)


def test_the_stages_link_their_review_page_and_show_sample_pairs(pipeline_run):
    _, root, run = pipeline_run
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in run.get_asset_materialization_events()
    }
    page = root / "review" / f"{CATEGORY}.html"
    for stage in ("rollouts", "filtered_rollouts", "judged_pairs"):
        assert metadata[stage]["review_page"].value == str(page)
    assert page.read_text().count("data:image/png;base64,") > 0 and 'class="chosen"' in page.read_text()
    pairs = LocalStore(root).read_table("judged_pairs", CATEGORY, schemas.JUDGED_PAIRS)
    table = metadata["judged_pairs"]["sample_pairs"].value
    assert table.startswith("| prompt_id | chosen | rejected | chosen_score | rejected_score |")
    assert sum(pid in table for pid in pairs["prompt_id"]) == min(5, pairs.height)


def test_a_person_labels_verdicts_on_the_page_and_the_check_uses_exactly_those(pipeline_run, server, browser):
    _, root, _ = pipeline_run
    url, human_config = server
    store = LocalStore(root)
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{url}/review/{CATEGORY}")
    wait_for(
        lambda: (
            browser.evaluate("document.readyState") == "complete"
            and browser.evaluate("!!document.getElementById('labelling')")
        ),
        "the review page",
    )

    images = browser.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images)  # every image decoded from its data: URI
    halves = browser.evaluate(
        "[...document.querySelectorAll('.pair')].map(p => [p.querySelector('.chosen pre').textContent, p.querySelector('.rejected pre').textContent])"
    )
    pairs = store.read_table("judged_pairs", CATEGORY, schemas.JUDGED_PAIRS)
    assert halves and {tuple(h) for h in halves} <= set(pairs.select("chosen", "rejected").iter_rows())

    rows = browser.evaluate(
        "[...document.querySelectorAll('tr.rollout')].map(r => [r.dataset.promptId, Number(r.dataset.sampleIdx)])"
    )
    for key in "jrjwjjr":  # rows 0 right, 1 wrong, 3 right
        browser.press(key)
    browser.evaluate("document.querySelectorAll('tr.rollout')[5].querySelector('button[data-label=wrong]').click()")
    for key in "kkw":  # back to row 3, labelled again: wrong
        browser.press(key)
    wait_for(lambda: browser.evaluate("document.body.dataset.saved") == "5", "five saves")
    assert browser.evaluate("document.getElementById('status').className") != "error"
    shown = browser.evaluate(
        "[...document.querySelectorAll('tr.rollout')].map(r => r.querySelector('.human-label').textContent)"
    )
    assert [shown[i] for i in (0, 1, 3, 5)] == ["right", "wrong", "wrong", "wrong"]
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "review_page.png"
    browser.evaluate("window.scrollTo(0, 0)")
    screenshot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000

    labels = read_human_labels(store, CATEGORY).sort("prompt_id", "sample_idx")
    given = {tuple(rows[0]): True, tuple(rows[1]): False, tuple(rows[3]): False, tuple(rows[5]): False}
    assert {(p, i): label for p, i, label in labels.select("prompt_id", "sample_idx", "label").iter_rows()} == given
    assert set(labels["who"]) == {"acceptance"} and labels["replaced"].sum() == 1

    run = materialize(human_config, root, ["filtered_rollouts", "judged_pairs"], CATEGORY)
    (check,) = run.get_asset_check_evaluations()
    values = {k: v.value for k, v in check.metadata.items()}
    counts = labels.group_by("label", "verdict").len()
    count = {(label, verdict): n for label, verdict, n in counts.iter_rows()}
    tp, fp, fn = count.get((True, True), 0), count.get((False, True), 0), count.get((True, False), 0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    assert (values["n"], values["human_labels"], values["labels_replaced"], values["labels_stale"]) == (4, 4, 1, 0)
    assert (values["true_pos"], values["false_pos"], values["false_neg"]) == (tp, fp, fn)
    assert values["f1"] == round(f1, 3) and check.passed == (f1 >= 0.9)
    assert (
        "judged_pairs" in {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    ) == check.passed
