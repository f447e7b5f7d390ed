"""DPO's reference pass on several GPUs: which device_map it loads its model with, that transformers gets it and the
log-probs stay the same, that accelerate's dispatch hooks survive the pass's patched forwards, and that the model is
freed when the pass ends (the training processes launched next need the cards)."""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest
from accelerate.hooks import AlignDevicesHook, add_hook_to_module
from transformers import AutoModelForImageTextToText

from vlm_rl_assets.dpo import training
from vlm_rl_assets.dpo.pair_dpo import encode_each_image_once
from vlm_rl_assets.dpo.shared_prefix import share_prefix
from vlm_rl_assets.dpo.training import reference_device_map, reference_logps
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.training import policy
from vlm_rl_assets_tests.helpers import colour_pairs


@pytest.mark.parametrize(
    ("device", "gpus", "device_map"), [("cpu", 0, None), ("cuda", 1, None), ("cuda", 2, "auto"), ("cuda", 8, "auto")]
)
def test_only_several_gpus_spread_the_reference_model(device: str, gpus: int, device_map: str | None) -> None:
    assert reference_device_map(device, gpus) == device_map


def test_the_device_map_reaches_transformers_and_keeps_the_logps(
    tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[object] = []
    original = AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        asked.append(kwargs.get("device_map"))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    pairs = colour_pairs(4, seed=2)
    plain = reference_logps(tiny_vlm_dir, pairs, batch_size=2)
    monkeypatch.setattr(training, "reference_device_map", lambda device, gpus: {"": "cpu"})
    assert reference_logps(tiny_vlm_dir, pairs, batch_size=2) == plain
    assert asked == [None, {"": "cpu"}]


def test_dispatch_hooks_survive_the_patched_forwards(tiny_vlm_dir: Path) -> None:
    """A device_map puts a hook on each placed module (its wrapper is the module's `forward`) to move its inputs to
    its GPU; the pass's patched forwards must hand that wrapper back, not the class's forward."""
    model = load_model(tiny_vlm_dir)
    modules = (model.model.visual, model.model)
    for module in modules:
        add_hook_to_module(module, AlignDevicesHook(execution_device="cpu"))
    hooked = [vars(module)["forward"] for module in modules]
    with share_prefix(model), encode_each_image_once(model):
        assert [vars(module)["forward"] for module in modules] != hooked
    assert [vars(module).get("forward") for module in modules] == hooked


def test_the_reference_model_is_freed_when_the_pass_ends(tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[weakref.ref] = []

    def tracked(*args, **kwargs):
        model = load_model(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(policy, "load_model", tracked)
    reference_logps(tiny_vlm_dir, colour_pairs(2, seed=3), batch_size=2)
    assert len(loaded) == 1 and loaded[0]() is None
