"""SFT and DPO through TRL on the tiny VLM: they train, stop on request, and save a loadable checkpoint; DPO with LoRA
and with a frozen vision tower trains only what it should."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from vlm_rl_assets.bootstrap import sft
from vlm_rl_assets.bootstrap.settings import SFTSettings
from vlm_rl_assets.bootstrap.sft import TrainExample, sft_train
from vlm_rl_assets.dpo.training import PreferencePair, dpo_train, dpo_trainer
from vlm_rl_assets.model.chat import user_message
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.model.train_result import METRICS_FILE
from vlm_rl_assets.training.policy import vision_tower
from vlm_rl_assets.training.settings import LoRASettings, TrainingSettings

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


def test_sft_scoring_only_the_answers_matches_trls_every_position(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SFTSettings(max_steps=3, batch_size=8, log_every=1)
    ours = sft_train(tiny_vlm_dir, tmp_path / "ours", examples, settings)
    monkeypatch.setattr(sft, "score_completions_only", contextlib.nullcontext)  # TRL's CPU path: every position
    stock = sft_train(tiny_vlm_dir, tmp_path / "stock", examples, settings)
    losses = [[entry["loss"] for entry in r.history if "loss" in entry] for r in (ours, stock)]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_sft_stop_when_ends_training_at_first_check(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path
) -> None:
    seen_training_mode: list[bool] = []

    def stop_when(model, processor, step) -> bool:
        seen_training_mode.append(model.training)
        return _generates(model, processor, examples[0].images[0])  # the caller's check generates mid-training

    settings = SFTSettings(max_steps=50, batch_size=8, eval_every=2, log_every=5)
    result = sft_train(tiny_vlm_dir, tmp_path, examples, settings, stop_when=stop_when)

    assert result.steps == 2
    assert seen_training_mode == [False]  # checked in eval mode, once
    assert "loss" in result.final  # the stopping step is logged even off the logging grid


def test_dpo_trains_saves_and_reloads(tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path) -> None:
    pairs = [
        PreferencePair(ex.prompt_text, ex.images, ex.answer, "Answer: " + COLOURS[(i + 1) % len(COLOURS)], beta=0.1)
        for i, ex in enumerate(examples)
    ]
    lines: list[str] = []
    result = dpo_train(
        tiny_vlm_dir, tmp_path, pairs, TrainingSettings(max_steps=3, batch_size=8, log_every=1), log=lines.append
    )

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


def _pairs(examples: list[TrainExample]) -> list[PreferencePair]:
    return [
        PreferencePair(ex.prompt_text, ex.images, ex.answer, "Answer: " + COLOURS[(i + 1) % len(COLOURS)], beta=0.1)
        for i, ex in enumerate(examples)
    ]


LORA_QV = LoRASettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))


def test_lora_trains_only_the_adapters(tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path) -> None:
    trainer = dpo_trainer(
        tiny_vlm_dir, tmp_path, _pairs(examples), TrainingSettings(max_steps=2, batch_size=8, lora=LORA_QV)
    )
    params = dict(trainer.model.named_parameters())
    trainable = sorted(name for name, param in params.items() if param.requires_grad)
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    frozen_before = {name: param.detach().clone() for name, param in params.items() if not param.requires_grad}
    adapters_before = {name: params[name].detach().clone() for name in trainable}

    trainer.train()

    assert all(torch.equal(params[name], before) for name, before in frozen_before.items())  # base weights untouched
    assert any(not torch.equal(params[name], before) for name, before in adapters_before.items())


def test_lora_checkpoint_is_merged_and_loads_like_any_model(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path
) -> None:
    from transformers import AutoModelForImageTextToText

    settings = TrainingSettings(max_steps=2, batch_size=8, learning_rate=1e-3, lora=LORA_QV)
    result = dpo_train(tiny_vlm_dir, tmp_path, _pairs(examples), settings)

    assert result.steps == 2
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("adapter_")]
    base = load_model(tiny_vlm_dir).state_dict()
    for merged in (
        load_model(tmp_path).state_dict(),
        AutoModelForImageTextToText.from_pretrained(tmp_path).state_dict(),
    ):
        assert merged.keys() == base.keys()  # plain weights: no lora_ or base_layer names
        targeted = {
            name for name in base if name.endswith(("q_proj.weight", "v_proj.weight")) and ".visual." not in name
        }
        assert targeted and all(not torch.equal(merged[name], base[name]) for name in targeted)  # adapters merged in
        assert all(torch.equal(merged[name], base[name]) for name in base.keys() - targeted)
    assert _generates(load_model(tmp_path), load_processor(tmp_path), examples[0].images[0])


@pytest.mark.parametrize("lora", [None, LoRASettings(r=4)], ids=["full", "lora_all_linear"])
def test_freeze_vision_tower_keeps_it_bit_identical(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path, lora: LoRASettings | None
) -> None:
    settings = TrainingSettings(max_steps=2, batch_size=8, learning_rate=1e-3, lora=lora, freeze_vision_tower=True)
    dpo_train(tiny_vlm_dir, tmp_path, _pairs(examples), settings)

    before, after = load_model(tiny_vlm_dir).state_dict(), load_model(tmp_path).state_dict()
    vision = {name for name in before if name.startswith("model.visual.")}
    assert vision and all(torch.equal(before[name], after[name]) for name in vision)
    changed = {name for name in before.keys() - vision if not torch.equal(before[name], after[name])}
    if lora is None:
        assert changed == before.keys() - vision  # everything else trained
    else:
        assert {name for name in changed if "language_model.layers.0." in name} == {
            f"model.language_model.layers.0.{module}.weight"
            for module in (
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "mlp.gate_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            )
        }


def test_freeze_vision_tower_without_one_says_what_to_do(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = LlamaForCausalLM(
        LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(ValueError, match="set training.freeze_vision_tower: false"):
        vision_tower(text_only)


def test_lora_still_encodes_each_image_once_per_step(
    tiny_vlm_dir: Path, examples: list[TrainExample], tmp_path: Path
) -> None:
    cached = [dataclasses.replace(p, ref_chosen_logps=-9.0, ref_rejected_logps=-9.0) for p in _pairs(examples)[:4]]
    trainer = dpo_trainer(
        tiny_vlm_dir, tmp_path, cached, TrainingSettings(lora=LoRASettings(r=4))
    )  # one forward: no reference
    seen: list[int] = []
    vision_tower(trainer.model).patch_embed.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.compute_loss(trainer.model, batch)
    assert seen == [len(batch["pixel_values"]) // 2]  # pair_dpo's sharing sees through the peft wrapper
