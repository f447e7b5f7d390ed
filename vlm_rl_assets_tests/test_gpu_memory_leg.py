"""bench/gpu_device.py --leg memory (bench/memory_device.py) and bench/memory_plan.py --gpu: the device machine's
memory check, run here in its CPU smoke mode (no CUDA counters: every stage runs, no peak is read) so that the one
device run a lent GPU gets does not fail on a path no one ran."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_chunked_log_probs_equal_the_full_log_softmax_and_its_gradients_across_tiles(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    device = importlib.import_module("memory_device")
    monkeypatch.setattr(device, "TILE_TOKENS", 7)
    monkeypatch.setattr(device, "TILE_COLUMNS", 10)  # 20 tokens x 33 columns: 3 x 4 tiles, ragged at both ends
    torch.manual_seed(0)
    hidden = torch.randn(20, 16, dtype=torch.float32, requires_grad=True)
    weight = torch.randn(33, 16, dtype=torch.float32, requires_grad=True)
    targets, upstream = torch.randint(0, 33, (20,)), torch.randn(20, dtype=torch.float32)

    def run(logps: callable) -> list[torch.Tensor]:
        out = logps()
        (out * upstream).sum().backward()
        grads = [out.detach(), hidden.grad.clone(), weight.grad.clone()]
        hidden.grad = weight.grad = None
        return grads

    chunked = run(lambda: device.ChunkedLogProbs.apply(hidden, weight, targets))
    full = run(lambda: (hidden @ weight.T).log_softmax(-1).gather(1, targets[:, None]).squeeze(1))
    for a, b in zip(chunked, full):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # 13-22 s on 2 cores: a tiny model built, 64 rollouts and 11 DPO passes in a process
def test_the_memory_legs_cpu_smoke_run_records_every_stage_with_its_sizes_and_the_plan_reads_it(
    tmp_path: Path, monkeypatch
) -> None:
    subprocess.run(
        [sys.executable, str(BENCH / "gpu_device.py"), "--leg", "memory", "--device", "cpu", "--tiny"]
        + ["--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    report = json.loads((tmp_path / "gpu_device_memory.json").read_text())
    runs = {run["stage"]: run for run in report["runs"]}
    assert list(runs) == ["rollouts", "dpo_reference", "dpo", "dpo_gc"]
    assert all(run["memory"]["peak_bytes"] is None for run in runs.values())
    facts = report["models"]["tiny"]
    monkeypatch.syspath_prepend(str(BENCH))
    shape = importlib.import_module("memory_plan").measured_shape(facts)  # what the plan rebuilds from the facts
    assert (shape.parameters, shape.dtype) == (facts["parameters"], "bfloat16")
    assert runs["rollouts"]["image_tokens"]["mean"] == 16  # the tiny spec's max pixels, 112 x 112
    assert runs["dpo"]["rows"] == 32 and runs["dpo"]["chosen_tokens"]["mean"] == 40
    assert runs["dpo"]["losses"][0] == pytest.approx(math.log(2), abs=1e-3)  # the policy is its reference at first
    assert runs["dpo_gc"]["gradient_checkpointing"] is True

    table = subprocess.run(
        [sys.executable, str(BENCH / "memory_plan.py"), "--gpu", str(tmp_path / "gpu_device_memory.json")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert table.count("not measured") == 4
    assert "| tiny | dpo_gc | dpo training, rows whole | — |" in table
