"""docker/ for real: docker/build_local.sh's images brought up by docker/docker-compose.yml (CPU override), a
category run launched through the GraphQL API in its own container (DockerRunLauncher), a run container killed
mid-rollout: marked failed by run monitoring, and the next run resumes from the shards it had finished; and PostgreSQL
restarted mid-rollout: the run rides it out, and the next run reuses all of its shards."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import REPO
from vlm_rl_assets_tests.services import docker_compose

pytestmark = pytest.mark.timeout(900)

# Seconds per stage: one small category (color) for the whole run, one with many shards (count) to fault mid-rollout
# (another category would change the base model, and color's run with it)
CONFIG = """
max_bad_fraction: 0.1
model: {path: embedded, device: cpu, torch_threads: 2}
engine: {batch_size: 48, max_new_tokens: 24, seed: 0, shard_prompts: 4}
bootstrap: {examples_per_category: 100, dev_per_category: 4, min_mean_accuracy: 1.0, max_mean_accuracy: 1.0,
            max_steps: 20, eval_every: 20, batch_size: 16}
training: {learning_rate: 1.0e-5, batch_size: 8, epochs: 1}
eval: {max_new_tokens: 24}
categories:  # the 20-step base is at chance on purpose: the deployment is tested, not learning
  color: {source: 'synthetic:color', n_train: 12, n_dev: 8, n_bench: 8, samples_per_prompt: 6, beta: 0.1,
          allow_chance_base: true}
  count: {source: 'synthetic:count', template: cot, min_response_words: 5, n_train: 160, n_dev: 8, n_bench: 8,
          samples_per_prompt: 6, beta: 0.3, allow_chance_base: true}
"""
FAULTED = "count"
PROJECT = "vlm_rl_assets_test"
COMPOSE_FILES = (
    "-f",
    str(REPO / "docker" / "docker-compose.yml"),
    "-f",
    str(REPO / "docker" / "docker-compose.cpu.yml"),
)
RUN_QUERY = """query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status tags { key value } } } }"""
REPOSITORY_QUERY = """{
  repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name } sensors { name } location { name } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
}"""
MATERIALIZATION_QUERY = """query ($partition: String!) { assetOrError(assetKey: {path: ["rollouts"]}) { ... on Asset {
  assetMaterializations(partitions: [$partition], limit: 1) { runId metadataEntries {
    label ... on IntMetadataEntry { intValue } } } } } }"""


class Stack:
    """The compose project, its GraphQL client and the host paths of its volumes."""

    def __init__(self, compose: list[str], env: dict[str, str], port: int):
        from dagster_graphql import DagsterGraphQLClient

        self.compose, self.env = compose, env
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([*self.compose, *args], env=self.env, capture_output=True, text=True, timeout=600)
        assert not check or done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def query(self, query: str, **variables) -> dict:
        return self.client._execute(query, variables)  # the client's own GraphQL call, for what it has no method for

    def run_status(self, run_id: str) -> tuple[str, dict[str, str]]:
        run = self.query(RUN_QUERY, runId=run_id)["runOrError"]
        return run["status"], {tag["key"]: tag["value"] for tag in run["tags"]}

    def launch(self, job: str, assets: list[str] | None = None, partition: str | None = None) -> str:
        """The run's id; `assets`: a subset of the job's (None: all of them)."""
        tags = {"dagster/partition": partition} if partition else {}
        return self.client.submit_job_execution(job, tags=tags, asset_selection=assets)

    def wait(self, run_id: str, timeout: float) -> str:
        """The run's status once it has ended."""
        deadline = time.monotonic() + timeout
        while (status := self.run_status(run_id)[0]) not in {"SUCCESS", "FAILURE", "CANCELED"}:
            assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout} s"
            time.sleep(2)
        return status


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_containers() -> list[str]:
    return docker("ps", "-aq", "--filter", "label=dagster/run_id", "--filter", "network=vlm_rl_assets_network").split()


def tear_down(stack: Stack) -> None:
    for container in run_containers():
        docker("rm", "-f", container)
    stack.run("down", "--volumes", "--remove-orphans", check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    compose = [*docker_compose(), "-p", PROJECT, *COMPOSE_FILES]
    config_dir = tmp_path_factory.mktemp("config")
    (config_dir / "pipeline.yaml").write_text(CONFIG)
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_POSTGRES_PASSWORD": "deployment-test",
        "POSTGRES_IMAGE": "vlm_rl_assets_postgres",
        "VLM_RL_CONFIG_DIR": str(config_dir),
        "VLM_RL_CONFIG": "/etc/vlm_rl/pipeline.yaml",
        "DAGSTER_WEBSERVER_PORT": str(port),
    }
    stack = Stack(compose, env, port)
    tear_down(stack)
    stack.run("up", "--detach", "--no-build")
    try:
        deadline = time.monotonic() + 240
        while not _location_loaded(stack):
            assert time.monotonic() < deadline, stack.run("logs", "--tail", "50")
            time.sleep(3)
        yield stack
    finally:
        print(stack.run("logs", "--tail", "80", "user_code", "daemon", check=False))
        tear_down(stack)


def _location_loaded(stack: Stack) -> bool:
    try:
        nodes = stack.query(REPOSITORY_QUERY)["repositoriesOrError"].get("nodes", [])
    except Exception:  # the webserver is not listening yet
        return False
    return bool(nodes)


def volume_root(name: str) -> Path:
    return Path(docker("volume", "inspect", "--format", "{{.Mountpoint}}", name))


def postgres(sql: str) -> str:
    service = ("--filter", "label=com.docker.compose.service=postgresql")
    (container,) = docker("ps", "-q", *service, "--filter", f"label=com.docker.compose.project={PROJECT}").split()
    return docker("exec", container, "psql", "-U", "dagster", "-d", "dagster", "-tAc", sql)


@pytest.fixture(scope="module")
def base_model(stack: Stack) -> None:
    assert stack.wait(stack.launch("__ASSET_JOB", ["base_model"]), timeout=300) == "SUCCESS"


def test_a_category_run_runs_in_its_own_container_and_lands_in_postgres_and_the_shared_volume(stack: Stack, base_model):
    listed = stack.query(REPOSITORY_QUERY)
    (repository,) = listed["repositoriesOrError"]["nodes"]
    assert {s["name"] for s in repository["schedules"]} == {"nightly_categories"}
    assert "release_when_categories_scored" in {s["name"] for s in repository["sensors"]}
    daemons = {d["daemonType"]: d["healthy"] for d in listed["instance"]["daemonHealth"]["allDaemonStatuses"]}
    assert all(daemons[d] for d in ("SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING")), daemons

    run_id = stack.launch("category_pipeline", partition="color")
    assert stack.wait(run_id, timeout=420) == "SUCCESS"

    _, tags = stack.run_status(run_id)
    container = json.loads(docker("inspect", tags["docker/container_id"]))[0]
    assert container["Config"]["Image"] == "vlm_rl_assets_user_code" and container["State"]["ExitCode"] == 0
    assert container["Config"]["Labels"]["dagster/run_id"] == run_id
    volumes = {m["Name"] for m in container["Mounts"] if m["Type"] == "volume"}
    assert volumes >= {"vlm_rl_assets_data", "vlm_rl_assets_logs"}
    store = LocalStore(volume_root("vlm_rl_assets_data"))
    for table in ("prompt_mixture", "rollouts", "benchmark_scores"):
        assert store.has_table(table, "color"), table
    assert postgres(f"SELECT status FROM runs WHERE run_id = '{run_id}'") == "SUCCESS"
    recorded = postgres(
        f"SELECT DISTINCT asset_key FROM event_logs WHERE run_id = '{run_id}'"
        " AND dagster_event_type = 'ASSET_MATERIALIZATION'"
    )
    assert {json.loads(key)[0] for key in recorded.split()} >= {"prompt_mixture", "rollouts", "benchmark_scores"}


def test_a_killed_run_container_fails_the_run_and_the_next_run_resumes_its_finished_shards(stack: Stack, base_model):
    store = fresh_rollouts(FAULTED)
    killed = stack.launch("category_pipeline", ["prompt_mixture", "rollouts"], partition=FAULTED)
    finished = wait_for_shards(stack, killed, store, FAULTED, 2)
    docker("kill", stack.run_status(killed)[1]["docker/container_id"])
    assert not store.has_table("rollouts", FAULTED)  # killed mid-rollout: the table comes after the last shard

    assert stack.wait(killed, timeout=120) == "FAILURE"  # run monitoring saw the container die
    resumed = stack.launch("category_pipeline", ["rollouts"], partition=FAULTED)
    assert stack.wait(resumed, timeout=300) == "SUCCESS"  # the gpu pool's slot was freed

    run_id, metadata = rollouts_materialization(stack, FAULTED)
    assert run_id == resumed and metadata["shards_reused"] >= len(finished) > 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # reused, not sampled again
    assert_every_rollout_once(store, FAULTED)


def test_a_postgres_restart_mid_rollout_is_ridden_out_by_the_run_and_the_next_run_reuses_every_shard(
    stack: Stack, base_model
):
    store = fresh_rollouts(FAULTED)
    run_id = stack.launch("category_pipeline", ["prompt_mixture", "rollouts"], partition=FAULTED)
    wait_for_shards(stack, run_id, store, FAULTED, 2)
    stack.run("restart", "postgresql")
    assert not store.has_table("rollouts", FAULTED)  # restarted mid-rollout
    assert "was interrupted" not in stack.run("logs", "postgresql")  # a fast shutdown, no crash recovery
    wait_until_answering(stack, run_id, FAULTED)

    assert stack.wait(run_id, timeout=300) == "SUCCESS"  # the step's process lived; its event writes retried
    dropped = f"run_id = '{run_id}' AND event LIKE '%Exception while writing logger call%'"
    assert postgres(f"SELECT count(*) FROM event_logs WHERE {dropped}") == "0"  # no log line lost
    materialized_by, metadata = rollouts_materialization(stack, FAULTED)
    assert materialized_by == run_id and metadata["shards_reused"] == 0
    total = metadata["shards_generated"]
    assert_every_rollout_once(store, FAULTED)

    following = stack.launch("category_pipeline", ["rollouts"], partition=FAULTED)
    assert stack.wait(following, timeout=300) == "SUCCESS"  # the gpu pool's slot was freed in the new database
    materialized_by, metadata = rollouts_materialization(stack, FAULTED)
    assert materialized_by == following and (metadata["shards_reused"], metadata["shards_generated"]) == (total, 0)
    assert_every_rollout_once(store, FAULTED)


def fresh_rollouts(category: str) -> LocalStore:
    """The shared volume's store without the category's rollouts (table, manifest, shards), which an earlier fault
    test left finished, so that the next run samples every shard again."""
    store = LocalStore(volume_root("vlm_rl_assets_data"))
    shutil.rmtree(store.root / "rollouts" / category, ignore_errors=True)  # its shards and manifest
    (store.root / "rollouts" / f"{category}.parquet").unlink(missing_ok=True)
    return store


def wait_for_shards(stack: Stack, run_id: str, store: LocalStore, category: str, count: int) -> dict[Path, int]:
    """The rollout shard files (and their mtimes) once the run has written `count`, to fault it mid-rollout."""
    shards = store.root / "rollouts" / category / "shards"
    deadline = time.monotonic() + 300
    while len(finished := {p: p.stat().st_mtime_ns for p in shards.glob("*/*.parquet")}) < count:
        assert time.monotonic() < deadline and stack.run_status(run_id)[0] in {"QUEUED", "STARTING", "STARTED"}
        time.sleep(0.2)
    return finished


def wait_until_answering(stack: Stack, run_id: str, category: str) -> None:
    """Until the webserver answers again: it holds a connection per storage (runs, event log), and the first query
    on each after the restart fails on it (the UI shows that error once)."""
    from dagster_graphql import DagsterGraphQLClientError

    deadline = time.monotonic() + 60
    while True:
        try:
            stack.run_status(run_id)
            stack.query(MATERIALIZATION_QUERY, partition=category)
            return
        except DagsterGraphQLClientError:
            assert time.monotonic() < deadline, "the webserver did not answer after PostgreSQL's restart"
            time.sleep(1)


def rollouts_materialization(stack: Stack, category: str) -> tuple[str, dict[str, int | None]]:
    """The latest rollouts materialization's run and metadata (shards_reused, shards_generated, ...)."""
    (materialization,) = stack.query(MATERIALIZATION_QUERY, partition=category)["assetOrError"]["assetMaterializations"]
    return materialization["runId"], {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}


def assert_every_rollout_once(store: LocalStore, category: str) -> None:
    """Every train prompt's 6 samples are in the rollouts table, none lost and none twice."""
    rollouts = store.read_table("rollouts", category, schemas.ROLLOUTS)
    prompts = store.read_table("prompt_mixture", category, schemas.PROMPTS).filter(pl.col("split") == "train")
    assert rollouts.height == prompts.height * 6  # none lost
    assert rollouts.select("prompt_id", "sample_idx").is_unique().all()  # none twice
    assert set(rollouts["prompt_id"]) == set(prompts["prompt_id"])
