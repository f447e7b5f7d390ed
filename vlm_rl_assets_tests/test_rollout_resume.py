"""A rollout run SIGKILLed mid-way, run again, samples only its missing shards and equals an uninterrupted run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from polars.testing import assert_frame_equal

from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import finish_worker, kill_when, start_worker
from vlm_rl_assets_tests.rollout_worker import CATEGORY, N_PROMPTS, PARAMS, SHARDS


def _start(model_dir: Path, root: Path, pause: float) -> subprocess.Popen:
    return start_worker("vlm_rl_assets_tests.rollout_worker", [str(model_dir), str(root), str(pause)], root)


def _shards(root: Path) -> dict[int, int]:
    """Finished shard index -> mtime (half-written shards are hidden temporaries, not *.parquet)."""
    return {int(p.stem): p.stat().st_mtime_ns for p in (root / "rollouts" / CATEGORY / "shards").glob("*/*.parquet")}


def _kill_after_some_shards(model_dir: Path, root: Path) -> dict[int, int]:
    kill_when(_start(model_dir, root, pause=0.5), root, lambda: len(_shards(root)) >= 2, "two shards")
    return _shards(root)


def test_killed_run_resumes_missing_shards_only_and_equals_an_uninterrupted_run(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    survivors = _kill_after_some_shards(tiny_vlm_dir, killed)
    assert 0 < len(survivors) < SHARDS
    assert not LocalStore(killed).has_table("rollouts", CATEGORY)  # the table comes only after every shard

    resumed_run, fresh_run = _start(tiny_vlm_dir, killed, 0.0), _start(tiny_vlm_dir, fresh, 0.0)
    resumed, uninterrupted = finish_worker(resumed_run, killed), finish_worker(fresh_run, fresh)

    assert sorted(resumed["reused"]) == sorted(survivors)
    assert sorted(resumed["generated"]) == sorted(set(range(SHARDS)) - set(survivors))
    assert {i: _shards(killed)[i] for i in survivors} == survivors  # reused shards were not rewritten
    assert uninterrupted == {"reused": [], "generated": list(range(SHARDS))}
    table = LocalStore(killed).read_table("rollouts", CATEGORY, schemas.ROLLOUTS)
    assert table.height == N_PROMPTS * PARAMS.n
    assert table.select("prompt_id", "sample_idx").is_unique().all()
    assert_frame_equal(table, LocalStore(fresh).read_table("rollouts", CATEGORY, schemas.ROLLOUTS))
    manifest = LocalStore(killed).read_table("rollouts", f"{CATEGORY}/manifest", schemas.ROLLOUT_MANIFEST)
    assert len(manifest["shards"][0]) == SHARDS and manifest["rows"][0] == table.height
