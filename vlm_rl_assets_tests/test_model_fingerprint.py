"""A checkpoint's fingerprint follows every file that decides its tokens or weights, and nothing else."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets_tests.helpers import retemplate


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _halve_max_pixels(data: dict) -> None:
    data["image_processor"]["size"]["longest_edge"] //= 2  # fewer image tokens per image


EDITS: dict[str, Callable[[Path], None]] = {
    "chat template": retemplate,
    "max_pixels in processor_config.json": lambda d: _edit_json(d / "processor_config.json", _halve_max_pixels),
    "max_pixels in preprocessor_config.json": lambda d: _edit_json(
        d / "preprocessor_config.json", lambda c: c.update(max_pixels=c["max_pixels"] // 2)
    ),
    "tokenizer merges": lambda d: _edit_json(d / "tokenizer.json", lambda t: t["model"]["merges"].pop()),
    "tokenizer_config.json": lambda d: _edit_json(d / "tokenizer_config.json", lambda c: c.update(model_max_length=64)),
    "generation_config.json": lambda d: _edit_json(d / "generation_config.json", lambda c: c.update(temperature=0.1)),
    "an added tokenizer file": lambda d: (d / "added_tokens.json").write_text('{"<extra>": 151700}'),
}


@pytest.fixture
def model(tiny_vlm_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model, with the legacy image processor file Qwen2-VL checkpoints on the Hub ship."""
    folder = Path(shutil.copytree(tiny_vlm_dir, tmp_path / "model"))
    (folder / "preprocessor_config.json").write_text(json.dumps({"max_pixels": 12845056, "min_pixels": 3136}))
    return folder


def test_a_copy_keeps_its_fingerprint(model: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model, tmp_path / "copy")  # new mtimes, same content: same policy, shards reusable
    assert model_fingerprint(copy) == model_fingerprint(model)


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_editing_what_decides_tokens_changes_the_fingerprint(model: Path, edit: Callable[[Path], None]) -> None:
    before = model_fingerprint(model)
    edit(model)
    assert model_fingerprint(model) != before


def test_files_no_loader_reads_keep_the_fingerprint(model: Path) -> None:
    before = model_fingerprint(model)
    (model / "README.md").write_text("# a model card")
    (model / ".gitattributes").write_text("*.safetensors filter=lfs")
    (model / "training_metrics.json").write_text("{}")
    (model / "original").mkdir()  # a subfolder: from_pretrained reads only the top level
    (model / "original" / "consolidated.pth").write_bytes(b"the same weights, another format")
    assert model_fingerprint(model) == before


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt", "model-00001-of-00002.safetensors"])
def test_weights_in_any_format_decide_the_fingerprint(tmp_path: Path, weights: str) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / weights).write_bytes(b"weights")
    before = model_fingerprint(tmp_path)
    (tmp_path / weights).write_bytes(b"weightz")  # same size, other weights
    assert model_fingerprint(tmp_path) != before


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"pickled arguments, not weights")
    with pytest.raises(ValueError, match=r"holds no weights .*\['config.json'\]"):
        model_fingerprint(tmp_path)
