"""The memory plan: the model's shape read from JSON files matches what transformers builds, a config that cannot fit
is refused at load with the numbers and the cheapest change that fits, and a step checks the plan before it loads a
model (planning/)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from vlm_rl_assets.__main__ import main as cli
from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.planning.plan import MemoryPlanError
from vlm_rl_assets.planning.shape import embedded_shape, shape_of_config, shape_of_folder

EXAMPLE_MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"
QWEN2_VL = ("Qwen2-VL-2B-Instruct", "Qwen2-VL-7B-Instruct", "Qwen2-VL-72B-Instruct")
COLOR = {"color": {"source": "synthetic:color"}}


def write_config(folder: Path, **sections: object) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"categories": COLOR, **sections}))
    return path


def model_folder(tmp_path: Path, name: str, max_pixels: int) -> Path:
    """A copy of an example model's JSON files with the processor's max pixels set as a user would."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLE_MODELS / name, folder)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**processor, "max_pixels": max_pixels}))
    return folder


def meta_parameters(config: object) -> tuple[int, int]:
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    named = list(model.named_parameters())
    return sum(p.numel() for _, p in named), sum(p.numel() for n, p in named if ".visual." in f".{n}")


@pytest.mark.parametrize("name", QWEN2_VL)
def test_parameters_counted_from_config_equal_the_model_transformers_builds_on_the_meta_device(name: str) -> None:
    from transformers import AutoConfig

    shape = shape_of_folder(EXAMPLE_MODELS / name)
    assert shape.counted_from == "config"
    assert (shape.parameters, shape.vision_parameters) == meta_parameters(
        AutoConfig.from_pretrained(EXAMPLE_MODELS / name)
    )


def test_embedded_shape_is_the_tiny_spec_at_its_largest_vocabulary() -> None:
    from transformers import Qwen2VLConfig

    from vlm_rl_assets.model.tiny_model import TinyVLMSpec, model_sizes

    shape = embedded_shape()
    assert (shape.parameters, shape.vision_parameters) == meta_parameters(
        Qwen2VLConfig(**model_sizes(TinyVLMSpec(), 1024))
    )
    assert shape.image_tokens == 16  # 112 x 112 pixels, 28 x 28 per token


def test_a_folder_with_weights_is_counted_from_their_headers_and_lora_as_peft_adds_it(tiny_vlm_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    shape = shape_of_folder(tiny_vlm_dir)
    model = load_model(tiny_vlm_dir)
    assert shape.counted_from == "weights"
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.vision_parameters == sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    config = json.loads((tiny_vlm_dir / "config.json").read_text())
    assert shape_of_config(config, {}, "sizes").parameters == shape.parameters
    adapted = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    assert shape.lora_parameters(8, "all-linear", True) == sum(
        p.numel() for p in adapted.parameters() if p.requires_grad
    )


def test_full_dpo_of_a_7b_on_one_24gb_card_is_refused_at_load_with_the_numbers_and_the_change(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Qwen2-VL-7B-Instruct", 256 * 28 * 28)
    engine = {"batch_size": 8}
    path = write_config(
        tmp_path, model={"path": str(folder), "device": "cuda"}, resources={"gpu_memory_gib": 24}, engine=engine
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert "does not fit 1 x 24 GiB GPU" in message
    assert "dpo training needs" in message and "rollouts needs" not in message  # 8 prompts at 256 image tokens fit
    assert "weights: 15.4 GiB" in message and "optimizer: 30.9 GiB" in message  # 8.29 G bfloat16 parameters, AdamW
    # no single change fits: checkpointing and LoRA together do
    change = "cheapest change that fits: training.gradient_checkpointing: true + training.lora: {r: 16} -> 20.6 GiB"
    assert "dpo training needs 124 GiB per GPU, 23 GiB usable" in message and change in message
    assert f"python -m vlm_rl_assets plan --config {path}" in message


def test_the_same_run_sharded_over_eight_80gb_cards_loads_and_the_plan_names_the_sharding(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Qwen2-VL-7B-Instruct", 256 * 28 * 28)
    model, engine = {"path": str(folder), "device": "cuda"}, {"batch_size": 8}
    resources = {"gpu_memory_gib": 80, "gpus_per_node": 8}
    unsharded = write_config(tmp_path, model=model, resources=resources, engine=engine)
    with pytest.raises(ConfigError, match=r"cheapest change that fits: training.gradient_checkpointing: true -> "):
        load_config(unsharded)
    training = {"sharding": "fsdp2", "num_processes": 8, "gradient_checkpointing": True}
    plan = load_config(
        write_config(tmp_path, model=model, resources=resources, engine=engine, training=training)
    ).memory_plan()
    assert plan is not None and plan.fits
    dpo = next(s for s in plan.stages if s.name == "dpo training")
    assert next(p for p in dpo.parts if p.name == "optimizer").note.endswith("1/8 each")


def test_plan_cli_prints_every_stage_and_exits_1_on_a_config_that_does_not_fit(tmp_path: Path, capsys) -> None:
    assert cli(["plan"]) == 0
    printed = capsys.readouterr().out
    assert "| rollouts |" in printed and "| dpo training |" in printed and "Every stage fits." in printed
    folder = model_folder(tmp_path, "Qwen2-VL-7B-Instruct", 256 * 28 * 28)
    path = write_config(tmp_path, model={"path": str(folder), "device": "cuda"}, resources={"gpu_memory_gib": 24})
    assert cli(["plan", "--config", str(path)]) == 1
    assert "| dpo training | dpo_checkpoint, policy_checkpoint |" in (out := capsys.readouterr().out) and "NO |" in out


def test_a_cuda_config_loads_where_no_card_is_visible_and_the_cli_says_what_to_set(tmp_path: Path, capsys) -> None:
    folder = model_folder(tmp_path, "Qwen2-VL-72B-Instruct", 256 * 28 * 28)
    path = write_config(tmp_path, model={"path": str(folder), "device": "cuda"})
    assert load_config(path).memory_plan() is None  # e.g. the Dagster webserver's host: the step checks it on the GPU
    assert cli(["plan", "--config", str(path)]) == 1
    assert "set resources.gpu_memory_gib" in capsys.readouterr().out


def test_a_step_checks_the_plan_before_loading_a_model_the_config_could_not_plan_at_load(
    tmp_path: Path, tiny_vlm_dir: Path
) -> None:
    folder = tmp_path / "model"  # not there at load (mounted later, say): nothing to plan yet
    config = load_config(write_config(tmp_path, model={"path": str(folder)}, engine={"batch_size": 10**7}))
    shutil.copytree(tiny_vlm_dir, folder)
    with pytest.raises(MemoryPlanError, match=r"rollouts needs .* on the CPU"):
        PipelineResource(config, str(tmp_path / "store")).start_model_dir(1)


def test_the_plan_is_within_a_quarter_of_every_peak_measured_on_cpu_for_the_pipelines_stages() -> None:
    """bench/memory_measure.json: the profiler's peaks of the project's own stages (tiny and ~30M models); the plan
    is given each run's sizes. rollouts_n1 (one sample per prompt, which no pipeline stage uses) is left out."""
    spec = importlib.util.spec_from_file_location("memory_plan", EXAMPLE_MODELS.parents[1] / "bench" / "memory_plan.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [r for r in bench.compare(json.loads(bench.MEASURED.read_text())) if r["cell"] != "rollouts_n1"]
    assert len(rows) == 14
    assert {r["stage"] for r in rows} == {"rollouts", "reference log-probs", "dpo training", "grpo training"}
    assert max(abs(r["error"]) for r in rows) <= 0.25, rows


def test_a_folder_the_plan_cannot_size_loads_and_says_why(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    """No processor config (base_model refuses such a folder with its own message) or a config.json without the
    sizes: no plan, and the reason, instead of a guess or a crash at load."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_vlm_dir, folder)
    (folder / "processor_config.json").unlink()
    config = load_config(write_config(tmp_path, model={"path": str(folder)}))
    assert config.memory_plan() is None and "no processor config" in config.plan_or_why()
    shutil.copy(tiny_vlm_dir / "processor_config.json", folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    assert (
        "config.json has no 'num_attention_heads'"
        in load_config(write_config(tmp_path, model={"path": str(folder)})).plan_or_why()
    )
