"""The `vlm` judge against a real judge server: vLLM's OpenAI-compatible server (its CPU build here, `make
test-vllm`) serving the tiny VLM on 127.0.0.1, started with the judge's own `serve_command`. A random tiny model is the
hardest case for parsing: only the rubric's JSON schema, sent as response_format, makes its replies parse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest

from vlm_rl_assets.judging.settings import VLMJudgeSettings
from vlm_rl_assets.judging.vlm_judge import serve_command
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine
from vlm_rl_assets.rollouts.vllm_orphans import orphaned_engines
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import REPO
from vlm_rl_assets_tests.test_judge_wiring import seed_store
from vlm_rl_assets_tests.test_vlm_judge import free_port
from vlm_rl_assets_tests.vllm_cpu_harness import ENGINE_PROCESSES

pytestmark = pytest.mark.vllm

ROWS = 4  # seed_store's rollouts of `scene`: 2 prompts x 2 samples


@pytest.fixture(scope="module")
def judge_server(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server, ready; yields its base URL, the model name it serves and its process (the last test kills it).
    Eager with a small KV cache (CPU)."""
    settings = VLMJudgeSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model=str(tiny_vlm_dir))
    command = [sys.executable, *serve_command(settings)[1:], "--enforce-eager", "--kv-cache-memory-bytes", str(2**29)]
    log = tmp_path_factory.mktemp("judge_server") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENGINE_PROCESSES}, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"the judge server exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the judge server was not ready in 240 s: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{settings.base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield settings.base_url, settings.model, server
    finally:
        server.terminate()  # gone already after the last test
        server.wait(timeout=60)


def judge_scene(root: Path, base_url: str, model: str, **vlm: object) -> dg.ExecuteInProcessResult:
    """filtered_rollouts[scene] judged by the server with these `judges.vlm` settings."""
    seed_store(root)
    settings = {"base_url": base_url, "model": model, "backoff_s": 0, "max_retries": 1, "repeats": 2} | vlm
    inline = ", ".join(f"{key}: {value!r}" for key, value in settings.items())
    config = root / "pipeline.yaml"
    config.write_text(
        "max_bad_fraction: 1.0\ncategories:\n  scene: {source: 'synthetic:scene', judge: vlm}\n"
        f"judges:\n  vlm: {{{inline}}}\n"
    )
    resources = {"pipeline": PipelineResource.from_file(str(config), str(root))}
    return dg.materialize(
        everything(resources),
        selection=["filtered_rollouts"],
        partition_key="scene",
        resources=resources,
        raise_on_error=False,
    )


def quarantined(root: Path) -> pl.DataFrame:
    return LocalStore(root).read_table("quarantine", "filtered_rollouts/scene", schemas.QUARANTINE)


def test_with_the_rubric_schema_every_reply_parses_and_the_repeats_are_compared(judge_server, tmp_path: Path) -> None:
    result = judge_scene(tmp_path, *judge_server[:2])
    assert result.success and quarantined(tmp_path).height == 0
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["judge"] == "vlm" and meta["judge_failures"] == 0
    assert 0 <= meta["judge_consistency"] <= 1 and 0 <= meta["judge_rank_agreement"] <= 1
    scored = LocalStore(tmp_path).read_table("filtered_rollouts", "scene", schemas.FILTERED_ROLLOUTS)
    assert scored.height == ROWS and scored["score"].is_between(0, 1).all()
    assert scored["judge_reason"].str.contains(r"^facts \d").all()


@pytest.mark.parametrize("response_format", ["json_object", "none"])
def test_without_the_schema_the_tiny_judges_replies_are_quarantined_not_scored(
    judge_server, tmp_path: Path, response_format: str
) -> None:
    """The same server and rows: any JSON object, or free text, is not the rubric's JSON from this judge. Each row is
    asked 1 + max_retries times, then quarantined with the reason, never scored; with none scored the stage fails."""
    result = judge_scene(tmp_path, *judge_server[:2], response_format=response_format, max_tokens=64)
    assert not result.success
    reasons = quarantined(tmp_path)["reason"]
    assert reasons.len() == ROWS and reasons.str.starts_with("vlm_malformed_json: 2 attempts").all()


def test_a_server_slower_than_the_timeout_quarantines_after_the_retries(judge_server, tmp_path: Path) -> None:
    """Free text up to 1024 tokens takes the server seconds; the judge waits 0.5 s per request (its model check
    answers well within that)."""
    result = judge_scene(tmp_path, *judge_server[:2], response_format="none", max_tokens=1024, timeout_s=0.5)
    assert not result.success
    reasons = quarantined(tmp_path)["reason"]
    assert (
        reasons.len() == ROWS and reasons.str.starts_with("vlm_timeout: 2 attempts; last: no reply within 0.5s").all()
    )


def test_a_killed_servers_engine_processes_are_ended_by_the_next_engine(
    judge_server, tiny_vlm_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Last, as it kills the server: SIGKILLed (a supervisor's forced stop, the OOM killer), vLLM's API server leaves
    its engine core and worker running (vLLM #55510), which on a GPU hold their memory; the next `VLLMEngine` ends
    them before it opens."""
    server = judge_server[2]
    server.kill()
    server.wait()
    orphans = [process.pid for process in orphaned_engines()]
    assert orphans, "vLLM's engine processes no longer outlive a killed parent: vllm_orphans.py may go"
    settings = EngineSettings(kind="vllm", vllm_enforce_eager=True, vllm_kv_cache_gib=0.25)
    with caplog.at_level("WARNING"), VLLMEngine(tiny_vlm_dir, settings):
        assert orphaned_engines() == []
    assert f"ended {len(orphans)} vLLM engine processes a killed run left holding memory" in caplog.text
