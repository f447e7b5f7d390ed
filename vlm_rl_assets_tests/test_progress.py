"""Progress of long stages: done/total, rate and ETA in the log about every 10%, totals for the metadata."""

from __future__ import annotations

from types import SimpleNamespace

from vlm_rl_assets.orchestration.ui import Progress


def test_progress_logs_each_decile_with_rate_and_eta_then_gives_metadata():
    lines: list[str] = []
    context = SimpleNamespace(log=SimpleNamespace(info=lines.append))
    progress = Progress(context, "rollouts[color] shards")
    for done in range(1, 101):
        progress(done, 100)
    assert len(lines) == 11 and lines[-1].startswith("rollouts[color] shards: 100/100 (") and "ETA 0s" in lines[-1]
    assert "/s, ETA " in lines[0]
    metadata = progress.metadata("shards")
    assert metadata["shards/done"] == 100 and metadata["shards/seconds"] >= 0 and metadata["shards/per_second"] > 0
