"""The Kubernetes code location (docker/helm-values.yaml): the same definitions with every step in its own pod, and
one GPU for each step of the `gpu` pool. Needs the `deploy` extra (dagster-k8s)."""

from typing import Any

import dagster as dg
from dagster_k8s import k8s_job_executor

from vlm_rl_assets.definitions import defs as local_defs
from vlm_rl_assets.orchestration.retries import GPU_POOL

CPU_STEP: dict[str, Any] = {"container_config": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}}
GPU_STEP: dict[str, Any] = {
    "container_config": {"resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": 1}}},
    # GPU nodes are usually tainted so only GPU pods land there
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}
GPU_STEPS = sorted(a.op.name for a in local_defs.assets if a.op.pool == GPU_POOL)
EXECUTOR_CONFIG: dict[str, Any] = {
    "step_k8s_config": CPU_STEP,
    "per_step_k8s_config": {step: GPU_STEP for step in GPU_STEPS},
}

defs = dg.Definitions.merge(local_defs, dg.Definitions(executor=k8s_job_executor.configured(EXECUTOR_CONFIG)))
