"""How rollouts are sampled: the engine and its sampling parameters."""

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from vlm_rl_assets.rollouts.engine import check_temperature
from vlm_rl_assets.settings import Settings

SamplingTemperature = Annotated[float, AfterValidator(check_temperature)]


class EngineSettings(Settings):
    kind: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers generate, CPU or GPU; vllm: vLLM's offline engine, on GPUs pip install "
        "'.[vllm]' (its CPU build runs in CI: README, Rollout engines)",
    )
    batch_size: int = Field(
        64, ge=1, description="hf: sequences per generate call (vllm takes a whole shard per call and schedules it)"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split across")
    gpu_memory_utilization: float = Field(
        0.85,
        gt=0,
        le=1,
        description="vllm: GPU memory share for weights + KV cache; vLLM also refuses to start unless this share "
        "of the card is free",
    )
    vllm_kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="vllm: KV cache per GPU in GiB (LLM's kv_cache_memory_bytes) instead of all that "
        "gpu_memory_utilization leaves, which for a small model on a large card is millions of blocks; a token "
        "takes 2 x layers x kv heads x head dim x dtype bytes (12 KiB for Qwen2-0.5B's shape in bfloat16: "
        "1 GiB holds ~87k tokens)",
    )
    vllm_enforce_eager: bool = Field(
        False,
        description="vllm: run the model eagerly, without torch.compile or CUDA graphs: starts in seconds instead of "
        "a minute or more, decodes slower; for short runs (tests, a few hundred prompts) and CPU builds",
    )
    max_images_per_prompt: int = Field(1, ge=1, description="vllm: images per prompt it reserves memory for")
    max_new_tokens: int = Field(48, ge=1)
    temperature: SamplingTemperature = Field(1.0, description="rollout sampling temperature, in (0, 2]")
    temperatures: list[SamplingTemperature] = Field(
        default_factory=list, description="a sweep: each prompt's samples split across these (empty: just temperature)"
    )
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    shard_prompts: int = Field(256, ge=1, description="prompts per rollout shard, the unit a killed run resumes from")
