"""The nightly schedule, the release sensor, the failure alert, retries and the GPU pool, evaluated without a daemon."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from vlm_rl_assets.automation import (
    ALERT_WEBHOOK_ENV,
    alert_on_run_failure,
    nightly_categories,
    release_when_categories_scored,
)
from vlm_rl_assets.config import load_config
from vlm_rl_assets.definitions import build_defs
from vlm_rl_assets.orchestration.partitions import Partitions
from vlm_rl_assets.orchestration.retries import GPU_POOL, retry_transient
from vlm_rl_assets_tests.graphs import ASSETS

PARTITIONS = Partitions.of(load_config())
CATEGORIES = list(PARTITIONS.categories)


def test_nightly_schedule_requests_one_run_per_category():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 26, 2, tzinfo=UTC))
    schedule = nightly_categories(PARTITIONS)
    requests = schedule(context)
    assert [r.partition_key for r in requests] == CATEGORIES
    assert len({r.run_key for r in requests}) == len(CATEGORIES) and all(
        r.run_key.startswith("2026-11-26/") for r in requests
    )
    assert schedule.job_name == "category_pipeline"
    assert [s.name for s in build_defs(load_config()).schedules] == [schedule.name]


def test_release_waits_for_every_category_then_runs_once():
    with dg.instance_for_test() as instance:

        def tick():
            return release_when_categories_scored(PARTITIONS)(dg.build_sensor_context(instance=instance))

        def scored(category: str) -> None:
            instance.report_runless_asset_event(dg.AssetMaterialization("benchmark_scores", partition=category))

        for category in CATEGORIES[:-1]:
            scored(category)
        assert isinstance(tick(), dg.SkipReason) and CATEGORIES[-1] in tick().skip_message
        scored(CATEGORIES[-1])
        request = tick()
        assert isinstance(request, dg.RunRequest)
        instance.report_runless_asset_event(dg.AssetMaterialization("release_report"))
        assert isinstance(tick(), dg.SkipReason)  # released: wait for the next night's scores


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_failed_run_is_posted_to_the_webhook(webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv(ALERT_WEBHOOK_ENV, url)

    @dg.op
    def breaks():
        raise RuntimeError("disk full")

    @dg.job
    def broken():
        breaks()

    with dg.instance_for_test() as instance:
        result = broken.execute_in_process(instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
        ).for_run_failure()
        alert_on_run_failure(context)
    assert received == [{"run_id": result.run_id, "job": "broken", "error": received[0]["error"]}]
    assert "breaks" in received[0]["error"]


def test_transient_errors_are_retried_and_others_fail_at_once(monkeypatch):
    monkeypatch.setattr("vlm_rl_assets.orchestration.retries.FIRST_DELAY_S", 0)
    calls = {"flaky": 0, "wrong": 0}

    @dg.asset
    @retry_transient
    def flaky(context) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("connection reset by peer")

    @dg.asset
    @retry_transient
    def wrong(context) -> None:
        calls["wrong"] += 1
        raise ValueError("bad config")

    assert dg.materialize([flaky]).success and calls["flaky"] == 3
    assert not dg.materialize([wrong], raise_on_error=False).success and calls["wrong"] == 1


def test_gpu_bound_assets_share_the_gpu_pool():
    pooled = {a.key.to_user_string() for a in ASSETS if a.op.pool == GPU_POOL}
    assert pooled == {
        "base_model",
        "rollouts",
        "dpo_checkpoint",
        "benchmark_scores",
        "policy_checkpoint",
        "release_report",
        "external_benchmarks",
    }
