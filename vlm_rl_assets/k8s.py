"""The Kubernetes code location (docker/helm-values.yaml): the same definitions with every step in its own pod. A
training step's pod holds `resources.gpus_per_node` GPUs of one node (its `accelerate launch` processes run there);
the other steps of the `gpu` pool hold the `engine.tensor_parallel_size` GPUs vLLM splits one model across (1 unless
set). Needs the `deploy` extra (dagster-k8s)."""

from typing import Any

import dagster as dg
from dagster_k8s import k8s_job_executor

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.definitions import defs as local_defs
from vlm_rl_assets.names import DPO_CHECKPOINT, GRPO_CHECKPOINT, POLICY_CHECKPOINT
from vlm_rl_assets.orchestration.retries import GPU_POOL

TRAINING_STEPS = frozenset({DPO_CHECKPOINT, GRPO_CHECKPOINT, POLICY_CHECKPOINT})
CPU_STEP: dict[str, Any] = {"container_config": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}}
CPUS_PER_GPU = 4
MEMORY_GIB_PER_GPU = 32


def gpu_step(gpus: int) -> dict[str, Any]:
    """A pod holding `gpus` GPUs, with CPU and memory requested in proportion, and /dev/shm in memory as the Docker
    runs have it (docker/dagster.yaml shm_size): NCCL between processes and vLLM share memory through it."""
    return {
        "container_config": {
            "resources": {
                "requests": {"cpu": str(CPUS_PER_GPU * gpus), "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
                "limits": {"nvidia.com/gpu": gpus},
            },
            "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
        },
        "pod_spec_config": {
            # GPU nodes are usually tainted so only GPU pods land there
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": "8Gi"}}],
        },
    }


def gpu_steps(defs: dg.Definitions) -> list[str]:
    return sorted(a.op.name for a in defs.assets if a.op.pool == GPU_POOL)


def executor_config(defs: dg.Definitions) -> dict[str, Any]:
    """The k8s_job_executor's config for `defs`, sized from the config their `pipeline` resource holds."""
    config: PipelineConfig = defs.resources["pipeline"].config
    per_step = {
        step: gpu_step(config.resources.gpus_per_node if step in TRAINING_STEPS else config.engine.tensor_parallel_size)
        for step in gpu_steps(defs)
    }
    return {"step_k8s_config": CPU_STEP, "per_step_k8s_config": per_step}


GPU_STEPS = gpu_steps(local_defs)
EXECUTOR_CONFIG = executor_config(local_defs)
defs = dg.Definitions.merge(local_defs, dg.Definitions(executor=k8s_job_executor.configured(EXECUTOR_CONFIG)))
