"""Iterative on-policy rounds: round 2 samples from round 1's policy, a killed round 2 resumes from its finished
rollout shards (from the CLI, one (category, round) alone) without touching round 1, and the stop rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.rounds.plan import RoundOutcome, RoundsStopped, read_outcome, start_model, write_outcome
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import finish_worker, kill_when, start_worker

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
ROUNDS = "rounds: {count: 2, stop_early: false}\n"  # the tiny run's gate fails; both rounds run anyway


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """Round 1 in full; round 2 killed mid-rollout of `color`, resumed by the CLI for (color, 2), then finished."""
    home = tmp_path_factory.mktemp("rounds")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = home / "pipeline.yaml"
    config.write_text(CONFIG.read_text() + ROUNDS + f"storage: {{root: '{home / 'store'}'}}\n")
    env = {"VLM_RL_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    store = LocalStore(home / "store")
    first = finish_worker(_worker(env, home / "round1", "1", "1"), home / "round1")
    round1 = {path: path.stat().st_mtime_ns for path in (home / "store").rglob("*") if _round1(path, home / "store")}
    killed = _worker(env, home / "killed", "2", "2")
    shards = home / "store" / "rollouts" / "round2" / "color" / "shards"
    manifest = home / "store" / "rollouts" / "round2" / "color" / "manifest.parquet"
    kill_when(
        killed, home / "killed", lambda: any(shards.rglob("*.parquet")) and not manifest.exists(), "round-2 shard"
    )
    shards_before = sorted(p.name for p in shards.rglob("*.parquet"))
    resumed = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "vlm_rl_assets.definitions",
            "--select",
            "rollouts",
            "--partition",
            "color|2",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = finish_worker(_worker(env, home / "round2", "2", "2"), home / "round2")
    yield store, home, first, last, round1, shards_before


def _worker(env: dict, out: Path, first: str, last: str):
    return start_worker("vlm_rl_assets_tests.rounds_worker", [first, last], out, env)


def _round1(path: Path, root: Path) -> bool:
    """A file round 1 wrote that no later round may touch (costs and quarantine are appended to; review pages and the
    reference cache are shared by design)."""
    parts = path.relative_to(root).parts
    shared = {"costs", "quarantine", "review", "reference_logps", "images", "rounds", "prompt_mixture"}
    return path.is_file() and parts[0] not in shared and not any(p.startswith("round") and p != "round1" for p in parts)


def _materializations(home: Path, asset: str, partition: str) -> list[dict]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=10
        ).records
        return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]


def test_round_two_samples_from_round_one_policy_and_trains_from_it(two_rounds):
    store, home, first, last, _, _ = two_rounds
    round1_policy = model_fingerprint(store.local_checkpoint("policy_checkpoint", "mixture"))
    for category in ("color", "count"):
        rows = store.read_table("rollouts", f"round2/{category}", schemas.ROLLOUTS)
        assert rows.height == 12 * 6 and rows.select("prompt_id", "sample_idx").is_unique().all()
        manifest = store.read_table("rollouts", f"round2/{category}/manifest", schemas.ROLLOUT_MANIFEST)
        assert manifest["policy_id"][0] == round1_policy  # on-policy: the newest policy, not the base
        assert store.has_table("judged_pairs", f"round2/{category}")
        assert store.has_table("benchmark_scores", f"round2/{category}")
        # reference: previous_round: round 2's pairs are anchored to round 1's policy, round 1's to the base
        references = store.read_table("reference_logps", category, schemas.REFERENCE_LOGPS)["reference"].n_unique()
        assert references == 2
    assert (store.local_checkpoint("policy_checkpoint", "round2/mixture") / "config.json").is_file()
    assert store.has_table("release_report", "round2/deltas") and store.has_table("release_report", "deltas")
    outcomes = [read_outcome(store, r) for r in (1, 2)]
    assert [o.pipeline_round for o in outcomes] == [1, 2]
    assert all(o.dev_gain_ci[0] <= o.dev_gain <= o.dev_gain_ci[1] for o in outcomes)
    gained = _materializations(home, "round_gain", "2")[0]
    assert gained["next_round"].startswith("none: this was the last round") and gained["next_round_runs"] is False
    # after round 1, the next-round sensor asks for round 2 of every category; each round's release ran after its
    # last scores, so the release sensor asks for none
    assert sorted(key for key, _ in first["next_round"]) == ["color|2", "count|2"] and first["release"] is None
    # after round 2 it asks for nothing new: round 1's requests again under the same run keys (Dagster launches a
    # run key once), none for a round 3
    assert sorted(map(tuple, last["next_round"])) == sorted(map(tuple, first["next_round"])) and last["release"] is None


def test_killed_round_two_resumes_from_its_shards_without_redoing_round_one(two_rounds):
    store, home, _, _, round1, shards_before = two_rounds
    assert 1 <= len(shards_before) < 3  # killed between its first and last shard
    resumed = _materializations(home, "rollouts", "color|2")
    cli = min(resumed, key=lambda m: m["shards_reused"])  # the CLI's resume; the worker's rerun reused every shard
    assert cli["shards_reused"] == len(shards_before) and cli["shards_generated"] == 3 - len(shards_before)
    assert cli["round"] == 2
    rows = store.read_table("rollouts", "round2/color", schemas.ROLLOUTS)
    assert rows.height == 12 * 6 and rows.select("prompt_id", "sample_idx").is_unique().all()  # none lost, none twice
    touched = [p for p, mtime in round1.items() if not p.exists() or p.stat().st_mtime_ns != mtime]
    assert not touched and len(round1) > 20  # round 1's tables and checkpoints were not redone
    assert len(_materializations(home, "rollouts", "color|1")) == 1
    costs = store.read_table("costs", "rollouts/color", schemas.COSTS)
    assert sorted(costs["round"].to_list()) == [1, 2, 2]  # the killed run recorded nothing; its resume and rerun did


def _outcome(pipeline_round: int, gain: float, problems: tuple[str, ...] = ()) -> RoundOutcome:
    return RoundOutcome(pipeline_round, gain, (gain - 1, gain + 1), 0.5, problems)


def test_stop_rule_ends_the_rounds_on_a_small_gain_or_a_failed_gate(tmp_path):
    store = LocalStore(tmp_path)
    base = tmp_path / "base"
    assert start_model(store, base, 1) == base
    with pytest.raises(MissingUpstreamError, match=r"round 2 starts from round 1's policy.*round_gain for round 1"):
        start_model(store, base, 2)
    write_outcome(store, _outcome(1, 0.4))
    with pytest.raises(
        RoundsStopped, match=r"round 2 does not run: round 1 gained \+0.4 points on dev, below rounds.min_gain 0.5"
    ):
        start_model(store, base, 2)
    write_outcome(store, _outcome(1, 3.0, ("the overall CI reaches 0",)))
    with pytest.raises(RoundsStopped, match="failed the promotion gate: the overall CI reaches 0"):
        start_model(store, base, 2)
    with pytest.raises(MissingUpstreamError, match="policy_checkpoint"):  # stop_early false: it runs, if it can
        start_model(store, base, 2, stop_early=False)
    write_outcome(store, _outcome(1, 0.5))
    assert read_outcome(store, 1).stop_reason() is None  # at the threshold: the rounds go on


def test_rounds_config_shorthand_and_grpo_anchor(tmp_path):
    def config(extra: str):
        path = tmp_path / "c.yaml"
        path.write_text(CONFIG.read_text() + extra)
        return load_config(path)

    assert config("rounds: 3\n").rounds.count == 3 and config("").rounds.count == 1
    with pytest.raises(ConfigError, match="rounds.reference: base needs training.algorithm: dpo"):
        config("rounds: {count: 2, reference: base}\ntraining: {algorithm: grpo}\n")
