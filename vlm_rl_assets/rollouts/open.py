"""Opening the rollout engine `engine.kind` names, and checking it tokenizes prompts as the DPO trainer will."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from vlm_rl_assets.model.settings import ModelSettings
from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest, HFEngine
from vlm_rl_assets.rollouts.preflight import check_agreement
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine  # imports vllm only when it opens: GPU-only extra


def open_engine(engine: EngineSettings, model: ModelSettings, model_dir: Path) -> Engine:
    """The engine on `model_dir`, torch's intra-op threads set first."""
    import torch  # heavy (~3 s): imported when an engine opens, not when the code location loads

    torch.set_num_threads(model.torch_threads)
    if engine.kind == "vllm":
        return VLLMEngine(
            model_dir,
            batch_size=engine.batch_size,
            tensor_parallel_size=engine.tensor_parallel_size,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            max_images_per_prompt=engine.max_images_per_prompt,
            seed=engine.seed,
        )
    return HFEngine(model_dir, device=model.device, batch_size=engine.batch_size)


def open_checked_engine(
    engine: EngineSettings,
    model: ModelSettings,
    model_dir: Path,
    prompt_texts: Sequence[str],
    images: Sequence[tuple[Image.Image, ...]],
    log: Callable[[str], None],
) -> Engine:
    """`open_engine`, then the pre-flight check that it tokenizes these prompts exactly as the DPO trainer will."""
    opened = open_engine(engine, model, model_dir)
    agreed = check_agreement(opened, model_dir, [GenerationRequest(t, i) for t, i in zip(prompt_texts, images)])
    log(f"pre-flight: the {opened.name} engine and the DPO trainer agree on {agreed} sampled prompts")
    return opened
