"""SFT and DPO through TRL on the tiny VLM: they train, stop on request, and save a loadable checkpoint."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from vlm_rl_assets.core.chat import user_message
from vlm_rl_assets.core.tiny_model import load_model, load_processor
from vlm_rl_assets.core.training import (
    METRICS_FILE,
    DPOSettings,
    PreferencePair,
    SFTSettings,
    TrainExample,
    dpo_train,
    sft_train,
)

COLOURS = ("red", "green", "blue", "yellow", "purple")
QUESTION = "What colour is the shape?"


def _disc(colour: str, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (112, 112), "white")
    x, y = rng.randint(22, 90), rng.randint(22, 90)
    ImageDraw.Draw(image).ellipse([x - 22, y - 22, x + 22, y + 22], fill=colour)
    return image


@pytest.fixture(scope="module")
def examples() -> list[TrainExample]:
    rng = random.Random(0)
    colours = [COLOURS[i % len(COLOURS)] for i in range(16)]
    return [TrainExample(QUESTION, (_disc(c, rng),), f"Answer: {c}") for c in colours]


def _assert_all_changed(before_dir: Path, after_dir: Path) -> None:
    """TRL's own test: every trainable parameter moved (the vision tower included)."""
    before = dict(load_model(before_dir).named_parameters())
    after = dict(load_model(after_dir).named_parameters())
    assert before.keys() == after.keys()
    unchanged = [name for name, param in before.items() if torch.equal(param, after[name])]
    assert unchanged == []


def _generates(model, processor, image: Image.Image) -> bool:
    """The engine's way in: chat.py's message, the processor's template, greedy `generate`."""
    text = processor.apply_chat_template([user_message(QUESTION, 1)], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[image]], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    return out.shape[1] > inputs["input_ids"].shape[1]


def test_sft_trains_saves_and_reloads(tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path) -> None:
    result = sft_train(tiny_vlm_dir, tmp_path, examples, SFTSettings(max_steps=3, batch_size=8, log_every=1))

    assert result.steps == 3
    losses = [entry["loss"] for entry in result.history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert result.final["loss"] == losses[-1]
    _assert_all_changed(tiny_vlm_dir, tmp_path)
    assert _generates(load_model(tmp_path), load_processor(tmp_path), examples[0].images[0])


def test_sft_stop_when_ends_training_at_first_check(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path
) -> None:
    seen_training_mode: list[bool] = []

    def stop_when(model, processor) -> bool:
        seen_training_mode.append(model.training)
        return _generates(model, processor, examples[0].images[0])  # the caller's check generates mid-training

    settings = SFTSettings(max_steps=50, batch_size=8, eval_every=2, log_every=5)
    result = sft_train(tiny_vlm_dir, tmp_path, examples, settings, stop_when=stop_when)

    assert result.steps == 2
    assert seen_training_mode == [False]  # checked in eval mode, once
    assert "loss" in result.final  # the stopping step is logged even off the logging grid


def test_dpo_trains_saves_and_reloads(tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path) -> None:
    pairs = [
        PreferencePair(ex.prompt_text, ex.images, ex.answer, "Answer: " + COLOURS[(i + 1) % len(COLOURS)])
        for i, ex in enumerate(examples)
    ]
    lines: list[str] = []
    result = dpo_train(tiny_vlm_dir, tmp_path, pairs, DPOSettings(max_steps=3, batch_size=8, log_every=1), log=lines.append)

    assert result.steps == 3
    assert lines[0].startswith("step 1/3 (") and " steps/s, ETA " in lines[0] and "rewards/accuracies=" in lines[0]
    saved = json.loads((tmp_path / METRICS_FILE).read_text())
    assert saved["steps"] == 3 and saved["final"] == result.final
    last_step = [entry for entry in result.history if "loss" in entry][-1]
    for key in ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert math.isfinite(result.final[key]) and result.final[key] == last_step[key]
    _assert_all_changed(tiny_vlm_dir, tmp_path)
    assert _generates(load_model(tmp_path), load_processor(tmp_path), pairs[0].images[0])


def test_empty_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TrainExample"):
        sft_train(tmp_path, tmp_path / "out", [])
    with pytest.raises(ValueError, match="PreferencePair"):
        dpo_train(tmp_path, tmp_path / "out", [])
