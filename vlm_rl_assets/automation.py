"""Nightly operation: every category at 02:00 UTC (round 1; with rounds, each later round once the one before it
gained enough), the release of a round (promoted only through the promotion gate) once each category has fresh
benchmark scores in it, and a report of every failed run (logged; posted to `$VLM_RL_ALERT_WEBHOOK_URL` when set)."""

from __future__ import annotations

import json
import os

import dagster as dg
import httpx

from vlm_rl_assets.assets.round_gain import NEXT_ROUND_RUNS
from vlm_rl_assets.names import BENCHMARK_SCORES, RELEASE_REPORT, ROUND_GAIN
from vlm_rl_assets.orchestration.partitions import Partitions

CATEGORY_JOB = "category_pipeline"
RELEASE_JOB = "release"
ALERT_WEBHOOK_ENV = "VLM_RL_ALERT_WEBHOOK_URL"
SCORES, REPORT, GAIN = dg.AssetKey(BENCHMARK_SCORES), dg.AssetKey(RELEASE_REPORT), dg.AssetKey(ROUND_GAIN)


def automation(partitions: Partitions) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    """The nightly schedule and the sensors, over `partitions`' categories and rounds."""
    return [nightly_categories(partitions)], [
        release_when_categories_scored(partitions),
        next_round_when_round_gained(partitions),
        alert_on_run_failure,
    ]


def nightly_categories(partitions: Partitions) -> dg.ScheduleDefinition:
    @dg.schedule(cron_schedule="0 2 * * *", job_name=CATEGORY_JOB, execution_timezone="UTC")
    def nightly_categories(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        """One run per category (round 1), keyed by the night so a retried tick launches nothing twice."""
        night = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [
            dg.RunRequest(
                run_key=f"{night}/{category}", partition_key=partitions.category_key(category), tags={"nightly": night}
            )
            for category in partitions.categories
        ]

    return nightly_categories


def _latest(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str | None) -> dg.EventLogRecord | None:
    """The latest materialization of `asset` (of one partition, when partitioned)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def release_when_categories_scored(partitions: Partitions) -> dg.SensorDefinition:
    @dg.sensor(job_name=RELEASE_JOB, minimum_interval_seconds=300)
    def release_when_categories_scored(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        """The release job of a round (mixture policy, its report, its promotion if it passes the gate), once every
        category's benchmark_scores of that round is newer than the round's last report. A release whose gate fails
        is not retried: the next one waits for new scores."""
        return release_request(context.instance, partitions)

    return release_when_categories_scored


def release_request(instance: dg.DagsterInstance, partitions: Partitions) -> dg.RunRequest | dg.SkipReason:
    scored = instance.get_latest_storage_id_by_partition(SCORES, dg.DagsterEventType.ASSET_MATERIALIZATION)
    categories = list(partitions.categories)
    shown = (1, categories)  # what the skip says is awaited: the latest round that has begun, else round 1
    for pipeline_round in range(partitions.rounds, 0, -1):  # the latest round first
        report = _latest(instance, REPORT, partitions.release_key(pipeline_round))
        released_at = report.storage_id if report else -1
        keys = {c: str(partitions.category_key(c, pipeline_round)) for c in categories}
        waiting = [c for c, key in keys.items() if scored.get(key, -1) <= released_at]
        if not waiting:
            newest = max(scored[key] for key in keys.values())
            partition = partitions.release_key(pipeline_round)
            return dg.RunRequest(run_key=f"round{pipeline_round}/scores-{newest}", partition_key=partition)
        if len(waiting) < len(keys) and shown[1] is categories:
            shown = (pipeline_round, waiting)
    pipeline_round, waiting = shown
    where = f" (round {pipeline_round})" if partitions.rounds > 1 else ""
    return dg.SkipReason(f"waiting for new benchmark_scores{where} of {', '.join(waiting)}")


def next_round_when_round_gained(partitions: Partitions) -> dg.SensorDefinition:
    @dg.sensor(job_name=CATEGORY_JOB, minimum_interval_seconds=300)
    def next_round_when_round_gained(context: dg.SensorEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        """With rounds: every category's run of round r+1, once round_gain[r] says the rounds go on (launched once
        per round_gain materialization)."""
        return next_round_request(context.instance, partitions)

    return next_round_when_round_gained


def next_round_request(instance: dg.DagsterInstance, partitions: Partitions) -> list[dg.RunRequest] | dg.SkipReason:
    requests = []
    for pipeline_round in range(1, partitions.rounds):
        gained = _latest(instance, GAIN, str(pipeline_round))
        if gained and gained.asset_materialization.metadata[NEXT_ROUND_RUNS].value:
            requests += [
                dg.RunRequest(
                    run_key=f"round{pipeline_round + 1}/{category}/{gained.storage_id}",
                    partition_key=partitions.category_key(category, pipeline_round + 1),
                )
                for category in partitions.categories
            ]
    return requests or dg.SkipReason("no round has gained enough for the next one (or rounds.count is 1)")


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
