"""How rollouts are sampled: the engine and its sampling parameters."""

from typing import Annotated, Literal

from pydantic import Field

from vlm_rl_assets.settings import Settings


class EngineSettings(Settings):
    kind: Literal["hf", "vllm"] = Field(
        "hf", description="hf: transformers generate, CPU or GPU; vllm: GPUs only, pip install '.[vllm]'"
    )
    batch_size: int = Field(64, ge=1, description="sequences per generate call")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split across")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm: GPU memory share for weights + KV cache")
    max_images_per_prompt: int = Field(1, ge=1, description="vllm: images per prompt it reserves memory for")
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    temperatures: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list, description="a sweep: each prompt's samples split across these (empty: just temperature)"
    )
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    shard_prompts: int = Field(256, ge=1, description="prompts per rollout shard, the unit a killed run resumes from")
