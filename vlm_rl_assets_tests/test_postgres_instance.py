"""A small config end to end on a Dagster instance stored in a real PostgreSQL server (VLM_RL_TEST_POSTGRES_URL,
started by .ci/services.sh): the production storage, not the test default SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
import yaml

from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets_tests.graphs import CATEGORY_ASSETS, everything
from vlm_rl_assets_tests.services import postgres_url

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
DOCKER_INSTANCE = Path(__file__).parents[1] / "docker" / "dagster.yaml"


@pytest.fixture
def database_url():
    """A new database for this test, dropped afterwards, so runs from earlier tests never count."""
    import psycopg2

    server = postgres_url()
    name = f"vlm_rl_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + f"/{name}"
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_pipeline_runs_on_a_postgres_instance(database_url, tmp_path, monkeypatch):
    """The Docker deployment's storage section, pointed at the test database through its environment variables."""
    import psycopg2

    url = urlparse(database_url)
    for name, value in {
        "HOSTNAME": url.hostname,
        "USER": url.username,
        "PASSWORD": url.password,
        "DB": url.path[1:],
    }.items():
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{name}", value)
    storage = yaml.safe_load(DOCKER_INSTANCE.read_text())["storage"]
    storage["postgres"]["postgres_db"]["port"] = url.port or 5432
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(tmp_path / "store"))}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        results = [
            dg.materialize(everything(resources), selection=["base_model"], instance=instance, resources=resources),
            dg.materialize(
                everything(resources),
                selection=CATEGORY_ASSETS,
                partition_key="color",
                instance=instance,
                resources=resources,
            ),
        ]
        assert all(r.success for r in results)
        scores = instance.get_latest_materialization_event(dg.AssetKey("benchmark_scores"))
        assert scores.dagster_event.partition == "color" and "delta_accuracy" in scores.asset_materialization.metadata
        run_ids = {r.run_id for r in results}
        rollouts = instance.get_latest_materialization_event(dg.AssetKey("rollouts")).asset_materialization.metadata
        assert {"shards/done", "shards/seconds", "shards/per_second"} <= set(rollouts)  # progress, stored too
        dpo = instance.get_latest_materialization_event(dg.AssetKey("dpo_checkpoint")).asset_materialization.metadata
        assert {"train_runtime", "train_steps_per_second"} <= set(dpo)

    with psycopg2.connect(database_url) as db, db.cursor() as cursor:  # read back from the server itself
        cursor.execute("SELECT run_id, status FROM runs")
        assert dict(cursor.fetchall()) == {run_id: "SUCCESS" for run_id in run_ids}
        cursor.execute("SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        stored = {(dg.AssetKey.from_db_string(key).to_user_string(), partition) for key, partition in cursor.fetchall()}
    assert stored == {("base_model", None)} | {(a.key.to_user_string(), "color") for a in CATEGORY_ASSETS}
