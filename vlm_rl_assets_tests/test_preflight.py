"""Pre-flight: every engine agrees with the DPO trainer on the tiny model; a trainer-side checkpoint
with another chat template or image resolution is caught, with both token sequences shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trl
from PIL import Image

from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest
from vlm_rl_assets.rollouts.preflight import PromptMismatchError, check_agreement


def _requests(n: int = 3) -> list[GenerationRequest]:
    sizes = [(112, 112), (64, 64), (90, 140)]
    return [GenerationRequest(f"What colour is shape {i}?", (Image.new("RGB", sizes[i % 3], "red"),)) for i in range(n)]


def _copy(tiny_vlm_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_vlm_dir, tmp_path / "trainer_side"))


def test_engine_and_trainer_agree_on_the_tiny_model(engine: Engine, tiny_vlm_dir: Path) -> None:
    assert check_agreement(engine, tiny_vlm_dir, _requests(20)) == 8  # a sample of 8, spread over the 20
    assert check_agreement(engine, tiny_vlm_dir, []) == 0


def test_a_wrong_chat_template_is_caught(engine: Engine, tiny_vlm_dir: Path, tmp_path: Path) -> None:
    """The trainer reads a checkpoint carrying the stock Qwen2.5-VL template (it adds a system turn)."""
    wrong = _copy(tiny_vlm_dir, tmp_path)
    stock = Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja"
    (wrong / "chat_template.jinja").write_text(stock.read_text())
    with pytest.raises(PromptMismatchError) as caught:
        check_agreement(engine, wrong, _requests())
    message = str(caught.value)
    assert "image tokens: engine 16, trainer 16" in message
    engine_line, trainer_line = (line for line in message.splitlines() if line.startswith(("  engine :", "  trainer:")))
    assert engine_line.startswith("  engine : '<|im_start|>user\\n<|vision_start|><|image_pad|>×16<|vision_end|>")
    assert trainer_line.startswith("  trainer: '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>")


def test_another_image_resolution_is_caught(engine: Engine, tiny_vlm_dir: Path, tmp_path: Path) -> None:
    wrong = _copy(tiny_vlm_dir, tmp_path)
    config_path = wrong / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["image_processor"]["size"]["longest_edge"] = 56 * 56  # 4 image tokens where the engine has 16
    config_path.write_text(json.dumps(config))
    with pytest.raises(PromptMismatchError, match="image tokens: engine 16, trainer 4"):
        check_agreement(engine, wrong, _requests())
