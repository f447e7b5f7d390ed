"""The memory plan's model shape for each VLM family the pipeline supports (`model_families.py`'s tiny checkpoints):
one image's tokens and vision patches at the processor's largest size bound what the family's own processor makes,
within 2x (planning/images.py); parameters from the weights are the model's; config.json's sizes count the Qwen-VL
families' exactly, and for the others the plan says it needs the weights (planning/shape.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vlm_rl_assets.config import load_config
from vlm_rl_assets.model.chat import user_message
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.planning.shape import QWEN_VL, ModelShape, ShapeUnknown, shape_of_config, shape_of_folder
from vlm_rl_assets_tests.test_memory_plan import write_config
from vlm_rl_assets_tests.test_model_families import family_dir  # noqa: F401 (the fixture: each family's folder)

# (width, height): square, 4:3, 2:1 and turned, each beyond every tiny processor's largest size
IMAGE_SIZES = ((256, 256), (256, 192), (192, 256), (256, 128), (128, 256))


def processed(folder: Path, shape: ModelShape) -> list[tuple[int, int]]:
    """(image tokens, vision patches) the family's processor makes of one image of each size: the image token's count
    in input_ids, and pixel_values in patches."""
    config = json.loads((folder / "config.json").read_text())
    image_token = config.get("image_token_id", config.get("image_token_index"))
    processor = load_processor(folder)
    text = processor.apply_chat_template([user_message("What is it?", 1)], add_generation_prompt=True, tokenize=False)
    counts = []
    for size in IMAGE_SIZES:
        batch = processor(text=[text], images=[Image.new("RGB", size, "white")], return_tensors="pt")
        patches = batch["pixel_values"].numel() // shape.vision.pixel_values
        counts.append((int((batch["input_ids"] == image_token).sum()), patches))
    return counts


def test_one_images_tokens_and_patches_bound_the_family_processors_within_twice(family_dir: Path) -> None:  # noqa: F811
    shape = shape_of_folder(family_dir)
    tokens, patches = (max(counts) for counts in zip(*processed(family_dir, shape)))
    assert tokens <= shape.image_tokens <= 2 * tokens, shape.images
    assert patches <= shape.image_patches <= 2 * patches, shape.images


def test_parameters_from_the_weights_are_the_models_and_its_vision_towers(family_dir: Path) -> None:  # noqa: F811
    from vlm_rl_assets.training.policy import vision_tower

    shape, model = shape_of_folder(family_dir), load_model(family_dir)
    assert shape.counted_from == "weights"
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.vision_parameters == sum(p.numel() for p in vision_tower(model).parameters())  # what freezing freezes


def test_config_sizes_count_the_qwen_vl_families_and_the_others_need_the_weights(
    family_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = json.loads((family_dir / "config.json").read_text())
    if config["model_type"] in QWEN_VL:
        assert shape_of_config(config, {}, "sizes").parameters == shape_of_folder(family_dir).parameters
        return
    folder = tmp_path / "model"
    shutil.copytree(family_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ShapeUnknown, match=r"put the checkpoint's \*\.safetensors files beside its config\.json"):
        shape_of_folder(folder)
    loaded = load_config(write_config(tmp_path, model={"path": str(folder)}))  # not refused: planned at the step
    assert loaded.memory_plan() is None
    assert loaded.plan_or_why().startswith(f"model folder {str(folder)!r}: model holds no weights")
