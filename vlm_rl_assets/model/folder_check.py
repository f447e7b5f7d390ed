"""What a brought model folder must hold for the pipeline to run it, checked before anything loads it.

Every stage loads the folder with transformers' own classes, its processor and its chat template: a folder that
needs the model's own Python code (`auto_map`), lacks a processor or a chat template, or whose chat template drops
the image would fail later, deep inside rollouts or training, or (a template without the image) train on prompts
the model never sees the image in. Each refusal says what is missing and how to save it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# Remote-code model types whose HF-native conversion transformers ships under another model type.
NATIVE_CONVERSIONS = {
    "internvl_chat": "InternVLForConditionalGeneration (OpenGVLab publishes converted '-hf' checkpoints, e.g. "
    "OpenGVLab/InternVL3-1B-hf; transformers' models/internvl/convert_internvl_weights_to_hf.py converts others)",
}


class ModelFolderError(ValueError):
    """A model folder the pipeline cannot run, with what to do about it."""


def needs_remote_code(folder: str | Path) -> bool:
    """Whether the folder's config names its own Python classes (`auto_map`) to load with."""
    return "auto_map" in _config(Path(folder))


def check_model_folder(folder: str | Path, trust_remote_code: bool = False) -> None:
    """Raise `ModelFolderError` when `folder` needs its own code (unless `trust_remote_code`), or has no processor
    or no chat template saved beside the weights. Reads only small JSON files."""
    folder = Path(folder)
    config = _config(folder)
    if "auto_map" in config and not trust_remote_code:
        raise ModelFolderError(
            f"{folder} needs its own Python code to load (config.json auto_map: {sorted(config['auto_map'])}), which "
            f"the pipeline does not run by default. Convert it to transformers' own class: {_native_class(config)}. "
            "Or, if you trust that code, set model.trust_remote_code: true"
        )
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise ModelFolderError(
            f"{folder} has no processor ({' or '.join(PROCESSOR_FILES)}): the pipeline turns images into tokens "
            "with the model's own processor. Save it beside the weights: "
            "AutoProcessor.from_pretrained(<the model you fine-tuned from>).save_pretrained(folder)"
        )
    if not (any((folder / name).is_file() for name in TEMPLATE_FILES) or _has_embedded_template(folder)):
        raise ModelFolderError(
            f"{folder} has no chat template ({' or '.join(TEMPLATE_FILES)}, or chat_template in "
            "tokenizer_config.json): rollouts and training format prompts with it. Set the one the model was trained "
            "with and save it: processor.chat_template = template; processor.save_pretrained(folder)"
        )


def check_image_placement(processor: Any, folder: str | Path) -> None:
    """Raise `ModelFolderError` when the chat template renders a one-image message without the processor's image
    token: the image would never reach the model."""
    from vlm_rl_assets.model.chat import user_message

    rendered = processor.apply_chat_template([user_message("What is in the image?", 1)], add_generation_prompt=True)
    if processor.image_token not in rendered:
        raise ModelFolderError(
            f"the chat template of {folder} drops the image: a one-image message renders as {rendered!r}, without "
            f"the image token {processor.image_token!r}. Use a template that emits it for each "
            "{'type': 'image'} content item (the model's original one), then processor.save_pretrained(folder)"
        )


def _native_class(config: dict[str, Any]) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = config.get("model_type", "")
    native = NATIVE_CONVERSIONS.get(model_type) or MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(model_type)
    if native is None:
        return f"transformers has none for model_type {model_type!r}; pick a family it ships (see the README's Supported models)"
    return native


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def _has_embedded_template(folder: Path) -> bool:
    """Older checkpoints keep the template in tokenizer_config.json or processor_config.json."""
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file() and json.loads(path.read_text()).get("chat_template"):
            return True
    return False
