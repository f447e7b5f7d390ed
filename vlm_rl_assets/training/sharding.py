"""The accelerate config file a launched training run reads: `accelerate launch --config_file` on the file this
module writes, built with accelerate's own `ClusterConfig`, so the launcher turns it into its processes' FSDP2 or
DeepSpeed plugin exactly as a file from `accelerate config` would (shapes: TRL's examples/accelerate_configs
fsdp2.yaml and deepspeed_zero3.yaml).

It takes plain values, not the project's settings classes, so bench/gpu_device.py writes and loads the same file on a
machine with only torch, transformers and accelerate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import is_deepspeed_available

CONFIG_FILE = "accelerate.yaml"  # in the run's job folder, next to job.json

# FSDP2 over the model's own transformer blocks (`_no_split_modules`: Qwen2-VL's decoder layers and vision blocks).
# FULL_STATE_DICT: the Trainer's checkpoints hold gathered weights (pytorch_model_fsdp.bin) and the model's
# `save_pretrained` gets whole tensors. Activation checkpointing stays off here: `training.gradient_checkpointing`
# reaches every run through TrainingArguments, and the Trainer refuses both at once.
FSDP2 = {
    "fsdp_version": 2,
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "fsdp_state_dict_type": "FULL_STATE_DICT",
    "fsdp_cpu_ram_efficient_loading": True,  # only rank 0 reads the weights; the others get them broadcast
    "fsdp_reshard_after_forward": True,  # free each block's gathered weights after its forward (ZeRO-3-like)
    "fsdp_offload_params": False,
    "fsdp_activation_checkpointing": False,
}
# ZeRO-3 with its partitioned init, and the 16-bit gathered weights on save, which `save_pretrained` needs.
ZERO3 = {
    "zero_stage": 3,
    "zero3_init_flag": True,
    "zero3_save_16bit_model": True,
    "offload_optimizer_device": "none",
    "offload_param_device": "none",
    "deepspeed_multinode_launcher": "standard",
}


class ShardingUnavailable(RuntimeError):
    """The library a sharding mode runs on is not installed where training starts."""


def launches(sharding: str, num_processes: int) -> bool:
    """Whether a run goes through `accelerate launch`: more than one process, or any sharding (FSDP2 on one GPU is a
    valid run, and accelerate applies a sharding plugin only in processes it launched)."""
    return num_processes > 1 or sharding != "none"


def mixed_precision(sharding: str, checkpoint_dtype: str) -> str:
    """bf16 for a sharded run of a bfloat16 checkpoint (FSDP2 then keeps float32 master weights and computes in
    bfloat16; DeepSpeed its bf16 mode); "no" otherwise: a DDP run trains in the checkpoint's dtype, as it always did."""
    return "bf16" if sharding != "none" and checkpoint_dtype == "bfloat16" else "no"


def accelerate_config(sharding: str, num_processes: int, precision: str) -> ClusterConfig:
    """The launch config of a run on one machine: DDP (`none`, the `--multi_gpu` launch of before; on CPU the
    launcher's ACCELERATE_USE_CPU makes it gloo), FSDP2 or DeepSpeed ZeRO-3. A free rendezvous port each launch."""
    plugin: dict[str, Any] = {
        "none": {"distributed_type": "MULTI_GPU"},
        "fsdp2": {"distributed_type": "FSDP", "fsdp_config": dict(FSDP2)},
        "zero3": {"distributed_type": "DEEPSPEED", "deepspeed_config": dict(ZERO3)},
    }[sharding]
    return ClusterConfig(
        compute_environment="LOCAL_MACHINE",
        mixed_precision=precision,
        use_cpu=False,
        debug=False,
        num_processes=num_processes,
        num_machines=1,
        main_process_port=0,
        **plugin,
    )


def write_accelerate_config(path: str | Path, sharding: str, num_processes: int, precision: str) -> Path:
    """Write `accelerate_config(...)` as YAML to `path` (accelerate's own writer); returns the path."""
    accelerate_config(sharding, num_processes, precision).to_yaml_file(str(path))
    return Path(path)


def require_backend(sharding: str) -> None:
    """Raise before launching when the sharding's library is missing here (accelerate's launcher would fail later,
    after the job is written, with a less direct message)."""
    if sharding == "zero3" and not is_deepspeed_available():
        raise ShardingUnavailable(
            "training.sharding: zero3 runs DeepSpeed ZeRO-3, which is not installed where training starts: "
            "pip install deepspeed (on the training machine's image), or set training.sharding: fsdp2, which needs "
            "only torch"
        )
