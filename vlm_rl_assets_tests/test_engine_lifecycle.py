"""Engines are closed before the next opens (vLLM reserves a share of the whole GPU per engine and refuses a second),
and what the vLLM engine would ask of vLLM, checked without vLLM: its arguments (dtype, KV cache) and its calls."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import psutil
import pytest
from PIL import Image
from pydantic import ValidationError

from vlm_rl_assets.dpo.health import probe_lengths
from vlm_rl_assets.evaluation.answer_cache import BenchModel, models_answers
from vlm_rl_assets.evaluation.benchmarks import BenchJudging, bench_scores
from vlm_rl_assets.evaluation.settings import EvalSettings
from vlm_rl_assets.model.loading import checkpoint_dtype, load_model
from vlm_rl_assets.model.settings import ModelSettings
from vlm_rl_assets.rollouts import open as engine_opening
from vlm_rl_assets.rollouts.engine import (
    Completion,
    Engine,
    GenerationRequest,
    HFEngine,
    SamplingParams,
    generate_in_batches,
)
from vlm_rl_assets.rollouts.preflight import PromptMismatchError
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine, llm_arguments
from vlm_rl_assets.rollouts.vllm_orphans import orphaned_engines, reap_orphaned_engines, running
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table


class Device:
    """Stands in for a GPU that holds one engine at a time, recording each open and close."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.held_by: str | None = None

    def open(self, model_dir: Path) -> Engine:
        if self.held_by is not None:
            raise RuntimeError(f"{model_dir.name} opened while {self.held_by} still holds the device")
        self.held_by = model_dir.name
        self.events.append(f"open {model_dir.name}")
        return RecordingEngine(self, model_dir.name)


class RecordingEngine(Engine):
    name = "recording"

    def __init__(self, device: Device, model: str) -> None:
        self.device, self.model = device, model

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]:
        assert self.device.held_by == self.model, "generate on a closed engine"
        return [[Completion("Answer: 3", 3, "stop")] * params.n for _ in requests]

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        return [[1, 2, 3] for _ in requests]

    def close(self) -> None:
        if self.device.held_by == self.model:
            self.device.held_by = None
            self.device.events.append(f"close {self.model}")


def test_the_fake_device_refuses_a_second_engine() -> None:
    device = Device()
    device.open(Path("base"))
    with pytest.raises(RuntimeError, match="dpo opened while base still holds the device"):
        device.open(Path("dpo"))


def test_benchmarks_close_each_model_before_opening_the_next(tmp_path) -> None:
    device = Device()
    prompts = prompt_table({"p1": ("number", "3"), "p2": ("number", "4")})
    images = [(Image.new("RGB", (56, 56)),)] * 2
    models = [BenchModel(name, Path(name), f"{name}-id") for name in ("base", "dpo")]
    settings = EvalSettings(samples_per_prompt=2)
    answers = models_answers(
        LocalStore(tmp_path), models, prompts, images, device.open, "recording", settings, 0, lambda stage: None
    )
    scores, _ = bench_scores(prompts, answers, settings, BenchJudging(), seed=0)
    assert device.events == ["open base", "close base", "open dpo", "close dpo"]
    assert set(scores["model"]) == {"base", "dpo"}


def test_the_length_probe_closes_the_base_model_before_opening_the_trained_one() -> None:
    device = Device()
    pairs = pl.DataFrame(
        {"prompt_id": ["a"], "prompt_text": ["What colour?"], "chosen": ["Answer: red"], "rejected": ["Answer: blue"]}
    )
    greedy = SamplingParams(n=1, temperature=0.0)
    lengths = probe_lengths(pairs, [(Image.new("RGB", (56, 56)),)], Path("base"), Path("dpo"), device.open, 1, greedy)
    assert device.events == ["open base", "close base", "open dpo", "close dpo"]
    assert lengths.base_tokens == lengths.policy_tokens == 3


def test_a_failed_preflight_closes_the_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    device = Device()
    monkeypatch.setattr(engine_opening, "open_engine", lambda engine, model, model_dir: device.open(model_dir))

    def disagree(*args) -> int:
        raise PromptMismatchError("differs")

    monkeypatch.setattr(engine_opening, "check_agreement", disagree)
    with pytest.raises(PromptMismatchError):
        engine_opening.open_checked_engine(EngineSettings(), ModelSettings(), tmp_path / "base", ["q"], [()], print)
    assert device.events == ["open base", "close base"]
    monkeypatch.setattr(engine_opening, "check_agreement", lambda *args: 0)
    with engine_opening.open_checked_engine(  # agreeing: open until the caller's `with` ends
        EngineSettings(), ModelSettings(), tmp_path / "dpo", [], [], print
    ) as engine:
        assert device.events[-1] == "open dpo" and engine.model == "dpo"
    assert device.events[-1] == "close dpo"


def test_a_closed_hf_engine_frees_its_model_and_refuses_to_generate(tiny_vlm_dir: Path) -> None:
    with HFEngine(tiny_vlm_dir, batch_size=4) as engine:
        assert engine.generate([GenerationRequest("What colour?", ())], SamplingParams(n=1, max_new_tokens=2))
    assert engine.model is None
    engine.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed: open a new engine"):
        engine.generate([GenerationRequest("What colour?", ())], SamplingParams(n=1, max_new_tokens=2))


def _chunks(prompts_per_call: int, n_requests: int) -> list[int]:
    sizes: list[int] = []

    def generate_batch(batch, _index, _start):
        sizes.append(len(batch))
        return [[Completion("", 1, "stop")] for _ in batch]

    generate_in_batches([GenerationRequest("q", ())] * n_requests, prompts_per_call, generate_batch)
    return sizes


def test_hf_takes_batch_size_sequences_per_call_and_vllm_a_whole_shard() -> None:
    # engine defaults (batch_size 64) and a category's 8 samples over a 256-prompt shard
    assert _chunks(HFEngine.prompts_per_call(64, 8), 20) == [8, 8, 4]
    assert _chunks(HFEngine.prompts_per_call(4, 8), 3) == [1, 1, 1]  # at least one prompt per call
    assert _chunks(VLLMEngine.prompts_per_call(256), 256) == [256]
    assert _chunks(VLLMEngine.prompts_per_call(0), 0) == []


def test_vllm_runs_the_checkpoints_dtype_as_transformers_loads_it(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    assert llm_arguments(tiny_vlm_dir, EngineSettings(kind="vllm"))["dtype"] == "float32"  # not vLLM's auto bf16
    assert str(load_model(tiny_vlm_dir).dtype) == "torch.float32"
    bf16 = Path(shutil.copytree(tiny_vlm_dir, tmp_path / "bf16"))
    load_model(tiny_vlm_dir).to("cpu").bfloat16().save_pretrained(bf16)
    assert checkpoint_dtype(bf16) == llm_arguments(bf16, EngineSettings(kind="vllm"))["dtype"] == "bfloat16"
    assert str(load_model(bf16).dtype) == "torch.bfloat16"
    legacy = json.loads((bf16 / "config.json").read_text())
    legacy["torch_dtype"] = legacy.pop("dtype")  # transformers 4's key
    (bf16 / "config.json").write_text(json.dumps(legacy))
    assert checkpoint_dtype(bf16) == "bfloat16"


def test_vllm_arguments_bound_the_kv_cache_when_asked(tiny_vlm_dir: Path) -> None:
    settings = EngineSettings(kind="vllm", gpu_memory_utilization=0.3, max_images_per_prompt=2, seed=5)
    unbounded = llm_arguments(tiny_vlm_dir, settings)
    assert unbounded == {
        "model": str(tiny_vlm_dir),
        "dtype": "float32",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.3,
        "limit_mm_per_prompt": {"image": 2, "video": 0},
        "seed": 5,
        "enforce_eager": False,
    }
    bounded = llm_arguments(
        tiny_vlm_dir, settings.model_copy(update={"vllm_kv_cache_gib": 1.5}), enable_prefix_caching=False
    )
    assert bounded == unbounded | {"kv_cache_memory_bytes": 1610612736, "enable_prefix_caching": False}
    with pytest.raises(ValidationError):
        EngineSettings(vllm_kv_cache_gib=0)


def test_vllm_on_a_cpu_prefills_unchunked_and_may_run_eagerly(tiny_vlm_dir: Path) -> None:
    """vLLM's CPU build crashes a seeded request whose prefill is chunked (it rewinds the sampler's generator by an
    offset only CUDA generators have), so on a CPU no prefill is chunked; on GPUs vLLM's default stays."""
    settings = EngineSettings(kind="vllm", vllm_enforce_eager=True)
    assert llm_arguments(tiny_vlm_dir, settings, on_cpu=True) == llm_arguments(tiny_vlm_dir, settings) | {
        "enable_chunked_prefill": False
    }
    assert llm_arguments(tiny_vlm_dir, settings)["enforce_eager"] is True


def test_a_killed_runs_vllm_engine_processes_are_ended_before_the_next_engine(caplog: pytest.LogCaptureFixture) -> None:
    """An orphan titled as vLLM titles its engine core (its parent gone, so init's child) is killed; a live
    process's engine core, and other processes, are not."""
    orphan = subprocess.run(
        ["bash", "-c", "(exec -a VLLM::EngineCore sleep 120) > /dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan_pid = int(orphan.stdout)
    owned = subprocess.Popen(["bash", "-c", "exec -a VLLM::EngineCore sleep 120"])  # its parent (this test) lives
    try:
        assert psutil.Process(orphan_pid).ppid() == 1
        found = [p.pid for p in orphaned_engines()]
        assert orphan_pid in found and owned.pid not in found
        with caplog.at_level("WARNING"):
            reap_orphaned_engines()
        assert not running(psutil.Process(orphan_pid)) and owned.poll() is None
        assert re.search(
            rf"ended \d+ vLLM engine processes a killed run left holding memory \(pids .*\b{orphan_pid}\b", caplog.text
        )
        caplog.clear()
        reap_orphaned_engines()  # nothing left: nothing said
        assert orphaned_engines() == [] and "ended" not in caplog.text
    finally:
        owned.kill()
        owned.wait()


@pytest.mark.parametrize(
    "settings",
    [
        lambda: EngineSettings(temperature=2.5),
        lambda: EngineSettings(temperatures=[1.0, 3.0]),
        lambda: EvalSettings(temperature=2.1),
        lambda: EngineSettings(temperature=0.0),
    ],
)
def test_temperatures_vllm_refuses_are_refused_in_the_settings(settings: Callable[[], object]) -> None:
    with pytest.raises(ValidationError, match=r"above 0 and at most 2 \(vLLM refuses higher ones\)"):
        settings()


def test_a_temperature_of_two_is_the_most_the_settings_and_sampling_take() -> None:
    assert EngineSettings(temperatures=[0.5, 2.0]).temperatures == [0.5, 2.0]
    assert EvalSettings(temperature=2.0).temperature == 2.0
    SamplingParams(temperature=0.0, n=1)  # greedy
    with pytest.raises(ValueError, match="at most 2"):
        SamplingParams(temperature=2.5)
