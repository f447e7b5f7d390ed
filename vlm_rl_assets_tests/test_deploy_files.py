"""docker/ and the local instance files checked against Dagster's own config schemas (no Docker engine or cluster
here), and the compose file's wiring between services, the run launcher and the workspace."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import ensure_workspace_config
from dagster._serdes.config_class import class_from_code_pointer

REPO = Path(__file__).parents[1]
DOCKER = REPO / "docker"
POSTGRES_ENV = (
    "DAGSTER_POSTGRES_HOSTNAME",
    "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_POSTGRES_DB",
)
GPU_ASSETS = {
    "base_model",
    "rollouts",
    "dpo_checkpoint",
    "benchmark_scores",
    "policy_checkpoint",
    "release_report",
    "external_benchmarks",
}


def load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def assert_valid(config_type, config, what: str) -> None:
    result = validate_config(config_type, config)
    assert result.success, f"{what}: {[e.message for e in result.errors]}"


@pytest.mark.parametrize("folder", [REPO, DOCKER], ids=["local", "docker"])
def test_instance_yaml_matches_dagster_schema(folder, monkeypatch):
    for name in POSTGRES_ENV:
        monkeypatch.setenv(name, "x")
    config, _ = dagster_instance_config(str(folder))  # the top-level schema, storage and concurrency included
    for section in ("run_launcher", "run_coordinator", "scheduler"):
        if section in config:  # each configurable class against its own schema
            cls = class_from_code_pointer(config[section]["module"], config[section]["class"])
            assert_valid(cls.config_type(), config[section].get("config", {}), section)


def run_container_context(*overrides: str) -> dict:
    """What the code location adds to each run's container (the user_code service's DAGSTER_CONTAINER_CONTEXT),
    checked as Dagster parses it; `overrides`: compose files laid over docker-compose.yml."""
    from dagster_docker.container_context import DockerContainerContext

    services = compose_config({"DAGSTER_POSTGRES_PASSWORD": "x"}, *overrides)["services"]
    context = json.loads(services["user_code"]["environment"]["DAGSTER_CONTAINER_CONTEXT"])
    DockerContainerContext.create_from_config(context)  # raises on a setting Dagster does not know
    return context["docker"]["container_kwargs"]


def test_docker_runs_get_postgres_gpus_and_a_gpu_pool():
    config = load("dagster.yaml")
    assert set(config["storage"]["postgres"]["postgres_db"]) >= {"hostname", "username", "password", "db_name"}
    from docker.types import DeviceRequest

    gpu, cpu = run_container_context(), run_container_context("docker-compose.cpu.yml")
    gpus = [DeviceRequest(**request) for request in gpu["device_requests"]]
    assert gpus[0]["Driver"] == "nvidia" and gpus[0]["Capabilities"] == [["gpu"]]
    assert "device_requests" not in cpu and cpu["volumes"] == gpu["volumes"]  # the CPU override drops only the GPUs
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    # a killed run is failed by the daemon, and the `gpu` slot its step held is given back
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0


def test_workspaces_match_dagster_schema():
    for path in (REPO / "workspace.yaml", DOCKER / "workspace.yaml"):
        ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))


def test_compose_wires_services_launcher_and_workspace():
    compose, instance, workspace = load("docker-compose.yml"), load("dagster.yaml"), load("workspace.yaml")
    services = compose["services"]
    assert set(services) == {"postgresql", "user_code", "webserver", "daemon"}
    grpc = workspace["load_from"][0]["grpc_server"]
    assert grpc["host"] == "user_code" and f'"{grpc["port"]}"' in (DOCKER / "Dockerfile.user_code").read_text()
    launcher = instance["run_launcher"]["config"]
    for name in ("user_code", "webserver", "daemon"):
        assert set(POSTGRES_ENV) <= set(services[name]["environment"]), name
    assert set(launcher["env_vars"]) <= set(services["daemon"]["environment"])  # the daemon launches the runs
    assert services["user_code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == services["user_code"]["image"]
    assert compose["networks"]["vlm_rl_assets_network"]["name"] == launcher["network"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in run_container_context()["volumes"])
    assert mounts["/opt/dagster/app/data"] == "vlm_rl_assets_data"  # storage.root `data` under the image's WORKDIR
    assert "WORKDIR /opt/dagster/app\n" in (DOCKER / "Dockerfile.user_code").read_text()
    for volume in mounts.values():
        assert compose["volumes"][volume]["name"] == volume  # run containers mount them by their global names
    logs = "vlm_rl_assets_logs:/opt/dagster/dagster_home/storage"  # DAGSTER_HOME's compute logs, for the webserver
    assert logs in services["webserver"]["volumes"]
    config = "${VLM_RL_CONFIG_DIR:-vlm_rl_assets_config}:/etc/vlm_rl:ro"  # the code server reads what runs read
    assert config in services["user_code"]["volumes"] and mounts["/etc/vlm_rl"] == "vlm_rl_assets_config"
    assert (
        "dagster-daemon" in services["daemon"]["entrypoint"]
        and "dagster-webserver" in services["webserver"]["entrypoint"]
    )


COMPOSE_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?::([-?])([^}]*))?\})")  # $$, ${X}, ${X:-default}, ${X:?error}
SOCKET = "/var/run/docker.sock"


def compose_config(env: dict[str, str], *overrides: str) -> dict:
    """The compose file as `docker compose config` reads it under `env`: values interpolated after parsing, an unset
    or empty `${X:?error}` refused with its error; `overrides`' services' mappings laid over it."""

    def value(match: re.Match) -> str:
        name, operator, argument = match.groups()
        if name is None:
            return "$"
        if env.get(name) or operator is None:
            return env.get(name, "")
        if operator == "?":
            raise ValueError(f"required variable {name} is missing a value: {argument}")
        return argument

    def interpolated(node):
        if isinstance(node, dict):
            return {k: interpolated(v) for k, v in node.items()}
        if isinstance(node, list):
            return [interpolated(v) for v in node]
        return COMPOSE_VARIABLE.sub(value, node) if isinstance(node, str) else node

    merged = load("docker-compose.yml")
    for override in overrides:
        for name, service in load(override)["services"].items():
            for key, setting in service.items():
                merged["services"][name][key] = {**merged["services"][name].get(key, {}), **setting}
    return interpolated(merged)


def test_compose_lets_no_one_in_by_default():
    with pytest.raises(ValueError, match="set DAGSTER_POSTGRES_PASSWORD"):  # no default password
        compose_config({})
    services = compose_config({"DAGSTER_POSTGRES_PASSWORD": "s3cret"})["services"]
    assert services["postgresql"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["daemon"]["environment"]["DAGSTER_POSTGRES_PASSWORD"] == "s3cret"
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]  # unauthenticated: loopback only
    exposed = compose_config({"DAGSTER_POSTGRES_PASSWORD": "s3cret", "DAGSTER_WEBSERVER_BIND": "0.0.0.0"})
    assert exposed["services"]["webserver"]["ports"] == ["0.0.0.0:3000:3000"]
    mounts = {name: [v.split(":")[0] for v in service.get("volumes", [])] for name, service in services.items()}
    assert [name for name, sources in mounts.items() if SOCKET in sources] == ["daemon"]  # it launches the runs
    assert "ports" not in services["postgresql"]


def test_images_pin_the_project_dagster_version():
    pyproject = (REPO / "pyproject.toml").read_text()
    core = re.search(r'"dagster==([\d.]+)"', pyproject).group(1)
    libraries = set(re.findall(r'"dagster-(?:postgres|docker|k8s)==([\d.]+)"', pyproject))
    image = (DOCKER / "Dockerfile.dagster").read_text()
    assert set(re.findall(r"dagster(?:-webserver|-graphql)?==([\d.]+)", image)) == {core}
    assert set(re.findall(r"dagster-(?:postgres|docker)==([\d.]+)", image)) == libraries
    assert dg.__version__ == core


def test_helm_values_request_a_gpu_on_gpu_steps():
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    from vlm_rl_assets import k8s

    values = load("helm-values.yaml")
    deployment = values["dagster-user-deployments"]["deployments"][0]
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("--module-name") + 1]
    assert module == k8s.__name__ and deployment["includeConfigInLaunchedRuns"]["enabled"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert_valid(k8s_job_executor.config_schema.config_type, k8s.EXECUTOR_CONFIG, "k8s_job_executor")
    assert set(k8s.EXECUTOR_CONFIG["per_step_k8s_config"]) == GPU_ASSETS
    for step in GPU_ASSETS:
        pod = UserDefinedDagsterK8sConfig.from_dict(k8s.EXECUTOR_CONFIG["per_step_k8s_config"][step])
        assert pod.container_config["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert k8s.defs.executor.name == "k8s"


def test_the_cuda_image_has_the_cuda_of_the_wheels_it_installs():
    """torch 2.13.0 and vLLM 0.31.0 / 0.32.0 from PyPI are CUDA 13.0 builds (torchvision 0.28.0's wheel bundles
    libcudart.so.13): the base image's CUDA must be 13.x, which needs an R580+ driver on the host."""
    image = (DOCKER / "Dockerfile.user_code_cuda").read_text()
    base = re.search(r"^ARG BASE_IMAGE=nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu24\.04$", image, re.M)
    assert base and base.group(1) == "13" and "FROM ${BASE_IMAGE}" in image
    assert "R580" in image
    pinned = re.search(r'"torch==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert pinned == "2.13.0" and f"pip install torch=={pinned} " in image
    assert '"vllm>=0.31.0,<0.33"' in (REPO / "pyproject.toml").read_text()  # both pin torch==2.13.0
