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
    """The engine on `model_dir`, torch's intra-op threads set first; close it (`with`) before opening another."""
    import torch  # heavy (~3 s): imported when an engine opens, not when the code location loads

    torch.set_num_threads(model.torch_threads)
    if engine.kind == "vllm":
        return VLLMEngine(model_dir, engine)
    return HFEngine(model_dir, device=model.device, batch_size=engine.batch_size)


def open_checked_engine(
    engine: EngineSettings,
    model: ModelSettings,
    model_dir: Path,
    prompt_texts: Sequence[str],
    images: Sequence[tuple[Image.Image, ...]],
    log: Callable[[str], None],
) -> Engine:
    """`open_engine`, then the pre-flight check that it tokenizes these prompts exactly as the DPO trainer will
    (the engine closed when it fails)."""
    opened = open_engine(engine, model, model_dir)
    try:
        agreed = check_agreement(opened, model_dir, [GenerationRequest(t, i) for t, i in zip(prompt_texts, images)])
    except BaseException:
        opened.close()
        raise
    log(f"pre-flight: the {opened.name} engine and the DPO trainer agree on {agreed} sampled prompts")
    return opened
