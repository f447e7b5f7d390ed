"""Cost accounting: the meter, the counts the stages add, the costs table, and release_report's cost table and gain."""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import polars as pl
import pytest
from PIL import Image

from vlm_rl_assets import metering
from vlm_rl_assets.evaluation.cost_report import TOTAL, cost_table, for_people, gain_per_cost
from vlm_rl_assets.metering import USAGE_FIELDS, Meter, Usage
from vlm_rl_assets.model.train_result import TrainResult
from vlm_rl_assets.processes import run_streamed
from vlm_rl_assets.rollouts.engine import Completion, GenerationRequest, generate_in_batches
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.store.costs import latest_costs, record_cost
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table

BURN = "import time\nwhile time.process_time() < 0.4: pass\nprint(time.process_time())"  # a child's CPU seconds


def usage(**spent: float) -> Usage:
    return Usage(**{name: 0 for name in USAGE_FIELDS} | spent)


def test_every_store_write_is_counted_in_bytes(tmp_path):
    store = LocalStore(tmp_path)
    image = png_bytes(Image.new("RGB", (4, 4), "red"))
    with Meter() as meter:
        store.write_table("prompt_mixture", "a", prompt_table({"p": ("number", "1")}), schemas.PROMPTS)
        store.put_image(image)
        store.put_image(image)  # stored once, so counted once
        store.write_bytes("review/a.html", b"<p>hi</p>")
        with store.staged_dir("dpo_checkpoint", "a") as folder:
            (folder / "weights.bin").write_bytes(b"w" * 1000)
    table = (tmp_path / "prompt_mixture" / "a.parquet").stat().st_size
    assert meter.usage.store_bytes_written == table + len(image) + len(b"<p>hi</p>") + 1000
    with Meter() as meter:
        store.read_table("prompt_mixture", "a", schemas.PROMPTS)
    assert meter.usage.store_bytes_written == 0  # reads cost no writes


def test_the_cpu_of_a_finished_child_process_is_counted(tmp_path):
    lines: list[str] = []
    own = time.process_time()
    with Meter() as meter:
        exited = run_streamed([sys.executable, "-c", BURN], lines.append, keep_lines=5)
    own = time.process_time() - own
    assert exited.returncode == 0
    child = float(lines[-1])  # the CPU seconds the child spent, by its own clock
    assert child >= 0.4 and meter.usage.cpu_seconds - own >= 0.95 * child


def test_the_meter_reads_the_counts_added_inside_it_on_cpu():
    metering.count(metering.GENERATED_TOKENS, 5)  # before the meter: not its step's
    with Meter(on_accelerator=False) as meter:
        metering.count(metering.GENERATED_TOKENS, 7)
        TrainResult(steps=1, history=[], final={}, input_tokens=300, examples=4).count_cost()
    spent = meter.usage
    assert (spent.generated_tokens, spent.trained_tokens, spent.train_examples) == (7, 300, 4)
    assert spent.wall_seconds > 0 and spent.peak_memory_mib > 0
    assert (spent.accelerators, spent.accelerator_seconds, spent.peak_accelerator_memory_mib) == (0, 0.0, 0.0)
    with pytest.raises(KeyError, match="generated_tokens"):
        metering.count("tokens", 1)


def test_on_cuda_a_step_holds_the_devices_it_sees_and_reports_the_busiest_ones_peak(monkeypatch):
    reset: list[int] = []
    cuda = SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        device_count=lambda: 2,
        reset_peak_memory_stats=reset.append,
        max_memory_allocated=lambda device: (300 + 200 * device) * 2**20,
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))  # no GPU here: torch's CUDA calls stand in
    with Meter(on_accelerator=True) as meter:
        pass
    spent = meter.usage
    assert reset == [0, 1] and spent.accelerators == 2
    assert spent.accelerator_seconds == 2 * spent.wall_seconds > 0 and spent.peak_accelerator_memory_mib == 500


def test_the_engines_batching_loop_counts_the_completion_tokens():
    requests = [GenerationRequest(f"q{i}", ()) for i in range(5)]

    def batch(chunk, _index, _start):
        return [[Completion("a b", n_tokens=3, finish_reason="stop"), Completion("a", 2, "length")] for _ in chunk]

    with Meter() as meter:
        generate_in_batches(requests, 2, batch)
    assert meter.usage.generated_tokens == 5 * (3 + 2)


def test_each_materialization_appends_a_row_and_the_latest_per_category_wins(tmp_path):
    store = LocalStore(tmp_path)
    record_cost(store, "rollouts", "color", usage(wall_seconds=1.0), run_id="r1")
    record_cost(store, "rollouts", "color", usage(wall_seconds=2.0), run_id="r2")
    record_cost(store, "rollouts", "count", usage(wall_seconds=3.0), run_id="r2")
    record_cost(store, "base_model", "all", usage(wall_seconds=4.0), run_id="r0")
    assert store.table_keys("costs") == ["base_model/all", "rollouts/color", "rollouts/count"]
    assert store.read_table("costs", "rollouts/color", schemas.COSTS)["run_id"].to_list() == ["r1", "r2"]
    latest = latest_costs(store)
    assert latest.select("asset", "category", "run_id", "wall_seconds").rows() == [
        ("rollouts", "color", "r2", 2.0),
        ("rollouts", "count", "r2", 3.0),
        ("base_model", "all", "r0", 4.0),
    ]
    assert latest_costs(LocalStore(tmp_path / "empty")).is_empty()


def costs_rows() -> pl.DataFrame:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [  # (asset, category, minutes after the start, wall and CPU seconds, what else it spent)
        ("base_model", "all", 0, 600, 1100, {"peak_memory_mib": 900, "trained_tokens": 2_000_000}),
        ("rollouts", "color", 1, 300, 550, {"generated_tokens": 400_000, "peak_memory_mib": 700}),
        ("rollouts", "count", 2, 360, 700, {"generated_tokens": 600_000, "peak_memory_mib": 800}),
        ("dpo_checkpoint", "color", 3, 900, 1700, {"trained_tokens": 500_000, "train_examples": 40}),
    ]
    return pl.DataFrame(
        [
            {"asset": a, "category": c, "round": 1, "run_id": "r", "recorded_at": start + timedelta(minutes=m)}
            | dataclasses.asdict(usage(wall_seconds=wall, cpu_seconds=cpu, **spent))
            for a, c, m, wall, cpu, spent in rows
        ],
        schema=schemas.COSTS,
    )


def test_the_cost_table_totals_add_up_its_rows_and_take_the_peaks_maxima():
    table = cost_table(costs_rows().sample(fraction=1.0, shuffle=True, seed=1))
    assert table["stage"].to_list() == ["base_model", "rollouts", "rollouts", "dpo_checkpoint", TOTAL]
    rows, total = table.head(-1), table.row(-1, named=True)
    for name in ("wall_seconds", "cpu_seconds", "generated_tokens", "trained_tokens", "train_examples"):
        assert total[name] == rows[name].sum()
    assert (total["generated_tokens"], total["peak_memory_mib"]) == (1_000_000, 900)
    shown = for_people(table).row(-1, named=True)
    assert (shown["wall"], shown["cpu"]) == ("36 min", "1.12 h")
    assert (shown["generated_tokens"], shown["trained_tokens"]) == ("1 M", "2.5 M")
    assert (shown["peak_memory"], shown["store_written"], shown["round"]) == ("900 MiB", "0 B", "")


def test_the_gain_per_unit_of_cost_says_which_hours():
    total = cost_table(costs_rows()).row(-1, named=True)  # 1 M generated tokens, 4050 CPU seconds, no accelerator
    gain = gain_per_cost(0.054, total)
    assert gain.hour == "CPU-hour" and gain.points == pytest.approx(5.4)
    assert gain.per_million_generated_tokens == pytest.approx(5.4)
    assert gain.per_hour == pytest.approx(5.4 / (4050 / 3600))
    assert gain.summary() == (
        "+5.4 points for 1 M generated tokens and 1.12 h of CPU time: +5.4 per M tokens, +4.8 per CPU-hour"
    )
    on_gpu = gain_per_cost(-0.02, total | {"accelerator_seconds": 7200.0})
    assert on_gpu.hour == "accelerator-hour" and on_gpu.per_hour == pytest.approx(-1.0)
    assert gain_per_cost(0.01, total | {"generated_tokens": 0}).per_million_generated_tokens is None
