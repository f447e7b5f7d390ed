"""The embedded tiny VLM: a stock Qwen2-VL checkpoint whose tokenizer, template and image sizes fit the tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from vlm_rl_assets.model.chat import assistant_message, user_message
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.model.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS, build_tiny_vlm
from vlm_rl_assets_tests.conftest import TINY_CORPUS

QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir: Path):
    return load_processor(tiny_vlm_dir)


def _image_pad_count(processor, size: tuple[int, int]) -> int:
    text = processor.apply_chat_template([user_message(QUESTION, 1)], add_generation_prompt=True)
    inputs = processor(text=[text], images=[[Image.new("RGB", size, "red")]], return_tensors="pt")
    return int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())


@pytest.mark.parametrize(
    "text", [*TINY_CORPUS[:5], "Unseen words, ünïcödé & digits 1234567\n\ttabs", "  leading spaces", ""]
)
def test_tokenizer_round_trips_text(processor, text: str) -> None:
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert processor.tokenizer.decode(ids) == text


def test_tokenizer_ids_agree_with_the_raw_tokenizers_file(processor, tiny_vlm_dir: Path) -> None:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_vlm_dir / "tokenizer.json"))
    for text in [*TINY_CORPUS, "<|im_start|>user\nAnswer: (B)<|im_end|>\n"]:
        assert processor.tokenizer(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids


def test_special_tokens_come_first_and_stay_whole(processor) -> None:
    tokenizer = processor.tokenizer
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None
    assert tokenizer("".join(SPECIAL_TOKENS), add_special_tokens=False)["input_ids"] == list(range(len(SPECIAL_TOKENS)))
    # Trained on the tasks' texts: frequent task words are single tokens.
    assert len(tokenizer("Answer", add_special_tokens=False)["input_ids"]) == 1
    assert 263 < len(tokenizer) <= 1024


def test_chat_template_is_qwen2_vl_and_splits_like_trl(processor) -> None:
    from trl.data_utils import apply_chat_template

    prompt = processor.apply_chat_template([user_message(QUESTION, 1)], add_generation_prompt=True)
    expected_prompt = (
        f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt == expected_prompt
    example = {"prompt": [user_message(QUESTION, 1)], "completion": [assistant_message("red circle")]}
    assert apply_chat_template(example, processor) == {
        "prompt": expected_prompt,
        "completion": "red circle<|im_end|>\n",
    }


@pytest.mark.parametrize(
    ("size", "n_tokens"), [((112, 112), 16), ((64, 64), 4), ((448, 448), 16), ((448, 300), 12), ((20, 20), 4)]
)
def test_image_token_count_is_bounded(processor, size: tuple[int, int], n_tokens: int) -> None:
    assert _image_pad_count(processor, size) == n_tokens


def test_saved_configs_name_stock_classes(tiny_vlm_dir: Path) -> None:
    processor_config = json.loads((tiny_vlm_dir / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "Qwen2VLProcessor"
    assert processor_config["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    # Stock loaders on torchvision machines also build a video processor from this entry.
    assert processor_config["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    tokenizer_config = json.loads((tiny_vlm_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "Qwen2Tokenizer"
    assert tokenizer_config["processor_class"] == "Qwen2VLProcessor"
    config = json.loads((tiny_vlm_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    assert config["text_config"]["bos_token_id"] is None
    assert config["text_config"]["eos_token_id"] == SPECIAL_TOKENS.index("<|im_end|>")
    assert load_processor(tiny_vlm_dir).__class__.__name__ == "Qwen2VLProcessor"
    assert AutoTokenizer.from_pretrained(tiny_vlm_dir).chat_template == CHAT_TEMPLATE


def test_model_size_matches_the_measured_learner(tiny_vlm_dir: Path) -> None:
    model = load_model(tiny_vlm_dir)
    assert not model.training
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 1.2e6


def test_model_reloads_with_identical_logits(tiny_vlm_dir: Path, processor, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    text = processor.apply_chat_template([user_message(QUESTION, 1)], add_generation_prompt=True)
    inputs = processor(text=[text], images=[[Image.new("RGB", (112, 112), "blue")]], return_tensors="pt")
    model = load_model(tiny_vlm_dir)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    with torch.inference_mode():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_build_is_deterministic_given_seed(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    rebuilt = build_tiny_vlm(tmp_path, TINY_CORPUS, seed=0)
    assert (rebuilt / "tokenizer.json").read_text() == (tiny_vlm_dir / "tokenizer.json").read_text()
    first, second = load_model(tiny_vlm_dir).state_dict(), load_model(rebuilt).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


# Where torchvision comes from for the build below: this environment's (the `vllm` extra), or a folder holding one
# (pip install --no-deps --target DIR torchvision==0.28.0); neither on CPU CI, where the image-only path is tested.
TORCHVISION_DIR = os.environ.get("VLM_RL_TEST_TORCHVISION_DIR", "")


@pytest.mark.skipif(
    not TORCHVISION_DIR and find_spec("torchvision") is None,
    reason="needs torchvision: pip install '.[vllm]', or VLM_RL_TEST_TORCHVISION_DIR=<a folder holding it>",
)
def test_builds_the_stock_processor_where_torchvision_imports(tmp_path: Path) -> None:
    script = [sys.executable, "-m", "vlm_rl_assets_tests.torchvision_build", str(tmp_path / "model")]
    done = subprocess.run(script + ([TORCHVISION_DIR] if TORCHVISION_DIR else []), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["processor"] == "transformers.models.qwen2_vl.processing_qwen2_vl.Qwen2VLProcessor"
    assert built["video_processor"] == "Qwen2VLVideoProcessor"
    # the same image tokens as the image-only processor (test_image_token_count_is_bounded, test_engine.py)
    assert built["image_tokens"] == {"112x112": 16, "64x64": 4, "90x140": 15}
