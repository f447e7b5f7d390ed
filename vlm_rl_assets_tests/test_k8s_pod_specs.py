"""The Kubernetes step pods of the code location vlm_rl_assets.k8s, rendered by dagster-k8s as its k8s_job_executor
would create them under docker/helm-values.yaml, without a cluster: resources, the GPUs of the `gpu` pool's steps
(a training step's from `resources.gpus_per_node`), the config map and the secret that carries the S3 credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[1]


def helm_container_context(deployment: dict) -> dict:
    """What Dagster's Helm chart hands launched runs for a user deployment with includeConfigInLaunchedRuns (its
    DAGSTER_CONTAINER_CONTEXT): the deployment's image policy, env, secrets and volumes."""
    return {
        "k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_vars": [f"{e['name']}={e['value']}" for e in deployment.get("env", [])],
            "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
            "volumes": deployment.get("volumes", []),
            "volume_mounts": deployment.get("volumeMounts", []),
        }
    }


def step_pod(op_name: str, executor_config: dict | None = None) -> dict:
    """The pod spec of `op_name`'s step job: the location's context, then the executor's step config, then the op's
    (`executor_config`: the code location's unless given)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    from vlm_rl_assets import k8s

    values = yaml.safe_load((REPO / "docker" / "helm-values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    config = executor_config or k8s.EXECUTOR_CONFIG
    context = K8sContainerContext.create_from_config(helm_container_context(deployment)).merge(
        K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["step_k8s_config"]))
    )
    context = context.merge(
        K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["per_step_k8s_config"].get(op_name, {}))
        )
    )
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image=image, dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"
        ),
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{op_name.replace('_', '-')}",
        user_defined_k8s_config=context.run_k8s_config,
        component="step_worker",
    )
    return job.to_dict()["spec"]["template"]["spec"]


@pytest.mark.parametrize("op_name", ["rollouts", "dpo_checkpoint", "judged_pairs", "prompt_mixture"])
def test_step_pods_request_a_gpu_only_on_the_gpu_pool_and_carry_config_and_s3_credentials(op_name):
    from vlm_rl_assets import k8s

    pod = step_pod(op_name)
    (container,) = pod["containers"]
    resources = container["resources"]
    if op_name in k8s.GPU_STEPS:
        assert resources["limits"] == {"nvidia.com/gpu": "1"} and resources["requests"]["memory"] == "32Gi"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in [
            {k: t[k] for k in ("key", "operator", "effect")} for t in pod["tolerations"]
        ]
    else:
        assert not resources.get("limits") and resources["requests"] == {"cpu": "2", "memory": "8Gi"}
        assert not pod.get("tolerations")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VLM_RL_CONFIG"] == "/etc/vlm_rl/pipeline.yaml" and env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    mounts = {m["mount_path"]: m["name"] for m in container["volume_mounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/vlm_rl"]]["config_map"]["name"] == "vlm-rl-config"  # the pipeline config
    # AWS_* for the s3:// storage.root and the judge's key come from the secret, not the image
    assert [s["secret_ref"]["name"] for s in container["env_from"] if s.get("secret_ref")] == ["vlm-rl-secrets"]
    assert container["image"] == "registry.example.com/vlm_rl_assets_user_code:latest"


def test_every_gpu_pool_asset_is_a_gpu_step():
    from vlm_rl_assets import k8s
    from vlm_rl_assets.orchestration.retries import GPU_POOL
    from vlm_rl_assets_tests.graphs import ASSETS

    assert set(k8s.GPU_STEPS) == {a.op.name for a in ASSETS if a.op.pool == GPU_POOL} and "rollouts" in k8s.GPU_STEPS


@pytest.mark.parametrize("algorithm", ["dpo", "grpo"])
def test_a_training_step_holds_the_gpus_of_a_node_and_a_rollout_step_one(algorithm):
    from vlm_rl_assets import k8s
    from vlm_rl_assets.config import load_config
    from vlm_rl_assets.definitions import build_defs
    from vlm_rl_assets.names import CATEGORY_CHECKPOINT
    from vlm_rl_assets.planning.settings import ResourcesSettings

    default = load_config()
    config = default.model_copy(
        update={
            "resources": ResourcesSettings(gpus_per_node=4),
            "training": default.training.model_copy(update={"algorithm": algorithm}),
        }
    )
    executor = k8s.executor_config(build_defs(config))
    steps = (CATEGORY_CHECKPOINT[algorithm], "policy_checkpoint", "rollouts")
    containers = {step: step_pod(step, executor)["containers"][0] for step in steps}
    gpus = {step: c["resources"]["limits"]["nvidia.com/gpu"] for step, c in containers.items()}
    assert gpus == {CATEGORY_CHECKPOINT[algorithm]: "4", "policy_checkpoint": "4", "rollouts": "1"}
    assert containers["policy_checkpoint"]["resources"]["requests"] == {"cpu": "16", "memory": "128Gi"}
    # the processes NCCL connects share memory through /dev/shm, which must not be the container's 64 MiB default
    assert all("/dev/shm" in {m["mount_path"] for m in c["volume_mounts"]} for c in containers.values())
