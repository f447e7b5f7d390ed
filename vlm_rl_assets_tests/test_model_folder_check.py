"""A brought model folder the pipeline cannot run is refused at base_model, saying what is missing and how to fix it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from vlm_rl_assets.model.folder_check import ModelFolderError, check_model_folder
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.test_resources import config_file


@pytest.fixture
def folder(tiny_vlm_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_vlm_dir, tmp_path / "model"))


def _edit_config(folder: Path, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | fields))


def _materialize_base_model(folder: Path, tmp_path: Path) -> dg.ExecuteInProcessResult:
    resource = PipelineResource.from_file(config_file(tmp_path, str(folder)), storage_root=str(tmp_path / "store"))
    return dg.materialize(
        everything({"pipeline": resource}),
        selection=["base_model"],
        resources={"pipeline": resource},
        raise_on_error=False,
    )


def _refusal(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error, messages = failure.step_failure_data.error, []
    while error is not None:  # Dagster wraps the asset's exception
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def test_a_well_formed_folder_is_accepted(folder: Path, tmp_path: Path) -> None:
    result = _materialize_base_model(folder, tmp_path)
    assert result.success
    assert result.asset_materializations_for_node("base_model")[0].metadata["source"].value == "configured"


def test_remote_code_is_refused_naming_the_native_class_or_the_opt_in(folder: Path) -> None:
    _edit_config(folder, auto_map={"AutoModelForImageTextToText": "modeling_custom.CustomVLM"})
    with pytest.raises(
        ModelFolderError, match=r"auto_map.*Qwen2VLForConditionalGeneration.*model\.trust_remote_code: true"
    ):
        check_model_folder(folder)
    check_model_folder(folder, trust_remote_code=True)  # the explicit opt-in lets it through


def test_remote_only_internvl_is_pointed_at_the_hf_native_class(folder: Path) -> None:
    _edit_config(folder, model_type="internvl_chat", auto_map={"AutoModel": "modeling_internvl_chat.InternVLChatModel"})
    with pytest.raises(
        ModelFolderError, match=r"InternVLForConditionalGeneration \(OpenGVLab publishes converted '-hf'"
    ):
        check_model_folder(folder)


def test_unknown_remote_model_type_says_transformers_has_no_class(folder: Path) -> None:
    _edit_config(folder, model_type="my_vlm", auto_map={"AutoModel": "modeling.MyVLM"})
    with pytest.raises(ModelFolderError, match=r"transformers has none for model_type 'my_vlm'"):
        check_model_folder(folder)


def test_missing_processor_is_refused_at_base_model(folder: Path, tmp_path: Path) -> None:
    (folder / "processor_config.json").unlink()
    message = _refusal(_materialize_base_model(folder, tmp_path))
    assert "has no processor (processor_config.json or preprocessor_config.json)" in message
    assert ".save_pretrained(folder)" in message


def test_missing_chat_template_is_refused_at_base_model(folder: Path, tmp_path: Path) -> None:
    (folder / "chat_template.jinja").unlink()
    message = _refusal(_materialize_base_model(folder, tmp_path))
    assert "has no chat template" in message and "processor.save_pretrained(folder)" in message


def test_template_in_tokenizer_config_is_accepted(folder: Path) -> None:
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config | {"chat_template": template}))
    check_model_folder(folder)


def test_template_that_drops_the_image_is_refused_at_base_model(folder: Path, tmp_path: Path) -> None:
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|vision_start|><|image_pad|><|vision_end|>", ""))
    message = _refusal(_materialize_base_model(folder, tmp_path))
    assert "drops the image" in message and "without the image token '<|image_pad|>'" in message
