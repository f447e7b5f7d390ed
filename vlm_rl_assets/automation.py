"""Nightly operation: every category at 02:00 UTC, the release (promoted only through the promotion gate) once each
category has fresh benchmark scores, and a report of every failed run (logged; posted to `$VLM_RL_ALERT_WEBHOOK_URL` when set)."""

from __future__ import annotations

import json
import os

import dagster as dg
import httpx

from vlm_rl_assets.partitions import category_partitions

CATEGORY_JOB = "category_pipeline"
RELEASE_JOB = "release"
ALERT_WEBHOOK_ENV = "VLM_RL_ALERT_WEBHOOK_URL"
SCORES = dg.AssetKey("benchmark_scores")
REPORT = dg.AssetKey("release_report")


@dg.schedule(cron_schedule="0 2 * * *", job_name=CATEGORY_JOB, execution_timezone="UTC")
def nightly_categories(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One run per category partition, keyed by the night so a retried tick launches nothing twice."""
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(run_key=f"{night}/{category}", partition_key=category, tags={"nightly": night})
        for category in category_partitions.get_partition_keys()
    ]


@dg.sensor(job_name=RELEASE_JOB, minimum_interval_seconds=300)
def release_when_categories_scored(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """The release job (mixture policy, its report, its promotion if it passes the gate), once every category's
    benchmark_scores is newer than the last report. A release whose gate fails is not retried: the next one waits
    for new scores."""
    scored = context.instance.get_latest_storage_id_by_partition(SCORES, dg.DagsterEventType.ASSET_MATERIALIZATION)
    reports = context.instance.fetch_materializations(REPORT, limit=1).records
    released_at = reports[0].storage_id if reports else -1
    waiting = [c for c in category_partitions.get_partition_keys() if scored.get(c, -1) <= released_at]
    if waiting:
        return dg.SkipReason(f"waiting for new benchmark_scores of {', '.join(waiting)}")
    return dg.RunRequest(run_key=f"scores-{max(scored.values())}")


def report_failure(run_id: str, job_name: str, message: str) -> dict[str, str]:
    """The failure alert; extend here (chat, pager). Posted as JSON to `$VLM_RL_ALERT_WEBHOOK_URL` when set."""
    alert = {"run_id": run_id, "job": job_name, "error": message}
    url = os.environ.get(ALERT_WEBHOOK_ENV)
    if url:
        headers = {"content-type": "application/json"}
        httpx.post(url, content=json.dumps(alert), headers=headers, timeout=10).raise_for_status()
    return alert


@dg.run_failure_sensor(monitor_all_code_locations=False)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    alert = report_failure(run.run_id, run.job_name, context.failure_event.message or "")
    context.log.error(f"run {alert['run_id']} of {alert['job']} failed: {alert['error']}")
