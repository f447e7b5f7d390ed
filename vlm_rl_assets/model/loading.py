"""Loading any checkpoint folder, the embedded one or a user's: its model in its own dtype, its processor (image-only
where torchvision is missing), the dtype rule every engine and trainer shares."""

from __future__ import annotations

import functools
import gc
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_rl_assets.model.folder_check import needs_remote_code

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


@functools.cache
def image_only(processor_class: type) -> type:
    """`processor_class` where torchvision exists or it has no video processor, else a subclass without one.

    transformers 5 loads and type-checks every sub-processor `get_attributes` names, and the video processors need
    torchvision; the subclass leaves `video_processor` out of them, so it is never loaded and stays None. It keeps
    the stock class name, which transformers writes into the saved configs, and writes back `video_settings` (the
    checkpoint's video processor settings), so its checkpoints load with stock `AutoProcessor` and vLLM elsewhere.
    """
    if torchvision_available() or "video_processor" not in processor_class.get_attributes():
        return processor_class

    class ImageOnly(processor_class):
        video_settings: dict[str, Any] | None = None

        @classmethod
        def get_attributes(cls) -> list[str]:
            return [name for name in super().get_attributes() if name != "video_processor"]

        def to_dict(self) -> dict[str, Any]:
            out = super().to_dict()
            if self.video_settings is not None:
                out["video_processor"] = self.video_settings
            return out

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__
    return ImageOnly


def load_processor(path: str | Path) -> ProcessorMixin:
    """The checkpoint's processor; where torchvision is missing, its class's image-only subclass (`image_only`),
    keeping the checkpoint's video settings to save them back."""
    from transformers import AutoProcessor

    if needs_remote_code(path):  # only past `check_model_folder` with model.trust_remote_code
        return AutoProcessor.from_pretrained(path, trust_remote_code=True)
    if torchvision_available():
        return AutoProcessor.from_pretrained(path)
    from transformers.models.auto.processing_auto import processor_class_from_name

    saved = _processor_config(Path(path))
    if "processor_class" not in saved:  # no processor of its own: AutoProcessor returns what it finds (a tokenizer)
        return AutoProcessor.from_pretrained(path)
    processor = image_only(processor_class_from_name(saved["processor_class"])).from_pretrained(path)
    if hasattr(processor, "video_settings"):
        processor.video_settings = saved.get("video_processor") or _read_json(Path(path) / VIDEO_CONFIG)
    return processor


VIDEO_CONFIG = "video_preprocessor_config.json"  # where checkpoints saved before transformers 5 keep video settings


def _processor_config(folder: Path) -> dict[str, Any]:
    """The processor settings a checkpoint saved: processor_config.json (transformers 5 nests the image and video
    processors' there), else the older processor_class entry of preprocessor_config.json."""
    return _read_json(folder / "processor_config.json") or _read_json(folder / "preprocessor_config.json") or {}


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_dtype(path: str | Path) -> str:
    """The dtype every engine and trainer runs a checkpoint in: the one its config.json names (transformers 5 writes
    `dtype`, 4 wrote `torch_dtype`), float32 where it names none, as transformers loads it."""
    config = json.loads((Path(path) / "config.json").read_text())
    return config.get("dtype") or config.get("torch_dtype") or "float32"


DeviceMap = str | dict[str, str]  # transformers' device_map: "auto" or the like, or module name -> device


def load_model(path: str | Path, device: str = "cpu", device_map: DeviceMap | None = None) -> PreTrainedModel:
    """The checkpoint's model on `device`, in its own dtype (`checkpoint_dtype`), in eval mode; with the folder's own
    code where its config names it (`check_model_folder` lets such a folder in only with model.trust_remote_code).

    With `device_map` (transformers' own, e.g. "auto": accelerate's big-model dispatch), the model is placed by it
    instead of `device`: "auto" spreads its layers over the visible GPUs, where one card cannot hold the weights."""
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging

    logging.disable_progress_bar()  # its "Loading weights" bar wrote two lines per load into the stages' logs
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=checkpoint_dtype(path), trust_remote_code=needs_remote_code(path), device_map=device_map
    )
    return (model if device_map is not None else model.to(device)).eval()


def release_memory() -> None:
    """Free the models no longer referenced (a loaded model holds reference cycles, so dropping it frees nothing
    until the collector runs) and hand the GPUs' cached blocks back, for the next model or process to use."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
