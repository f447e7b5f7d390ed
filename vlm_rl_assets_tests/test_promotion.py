"""The promotion gate, fail-closed: its rule on exact deltas and verdicts, and the promoted_policy step on a prepared
store (a checkpoint that fails the gate is never the promoted one)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from vlm_rl_assets.definitions import defs
from vlm_rl_assets.evaluation.promotion import promotion_problems
from vlm_rl_assets.evaluation.stats import OVERALL, paired_deltas
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import verdicts

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"  # categories color and count
GAIN = (0.1, 0.05, 0.15)  # overall delta and CI, clearly above zero


def deltas(overall: tuple[float, float, float], **categories: tuple[float, float, float]) -> pl.DataFrame:
    rows = [(c, *d, 200) for c, d in categories.items()] + [(OVERALL, *overall, 200 * len(categories))]
    return pl.DataFrame(rows, schema=schemas.BENCHMARK_DELTAS, orient="row")


def complete_verdicts(*categories: str) -> pl.DataFrame:
    return pl.concat([verdicts(c, m, [True, False, True]) for c in categories for m in ("base", "policy")])


def problems(table: pl.DataFrame, verdict_table: pl.DataFrame | None = None, current: str = "p1") -> list[str]:
    categories = [c for c in table["category"] if c != OVERALL]
    return promotion_problems(
        complete_verdicts(*categories) if verdict_table is None else verdict_table,
        table,
        candidate="policy",
        categories=categories,
        max_category_loss=0.01,
        evaluated_policy="p1",
        current_policy=current,
    )


def test_a_clear_gain_without_category_losses_passes():
    assert problems(deltas(GAIN, a=(0.2, 0.1, 0.3), b=(-0.005, -0.05, 0.04))) == []


def test_a_category_loss_blocks_only_when_its_whole_ci_lies_below_the_allowed_loss():
    noisy = deltas(GAIN, a=(0.25, 0.2, 0.3), b=(-0.05, -0.1, 0.0))  # point estimate below -0.01, CI reaches 0
    assert problems(noisy) == []
    [loss] = problems(deltas(GAIN, a=(0.25, 0.2, 0.3), b=(-0.08, -0.12, -0.03)))
    assert "category 'b' loses accuracy: delta -8.0 points, 95% CI [-12.0, -3.0]" in loss and "(-1.0 points)" in loss


def test_an_overall_gain_whose_ci_reaches_zero_fails():
    [uncertain] = problems(deltas((0.1, -0.01, 0.2), a=(0.1, 0.0, 0.2), b=(0.1, 0.0, 0.2)))
    assert uncertain.startswith("overall delta +10.0 points, 95% CI [-1.0, +20.0]")
    assert "does not lie above zero" in uncertain


def test_missing_verdicts_and_nan_deltas_fail_naming_what_is_missing():
    table = pl.concat(
        [
            verdicts("a", "base", [True, False, False, True]),
            verdicts("a", "policy", [True, True, True]),  # a3 never answered
            verdicts("b", "base", [False, False]),
            verdicts("b", "policy", [True, None]),  # b1 answered without a verdict
        ]
    )
    found = promotion_problems(
        table,
        paired_deltas(table, "policy"),
        candidate="policy",
        categories=["a", "b", "c"],
        max_category_loss=0.01,
        evaluated_policy="p1",
        current_policy="p1",
    )
    assert "category 'a': 1 of 4 bench prompts lack a policy verdict (a3)" in found
    assert "category 'b': 1 of 2 bench prompts lack a policy verdict (b1)" in found
    assert "category 'c' has no benchmark verdicts" in found
    assert "category 'c' is missing from the release report's deltas" in found
    assert any(p.startswith("category 'a' is NaN") for p in found)
    assert any(p.startswith("the overall delta is NaN") for p in found)


def test_a_report_of_another_checkpoint_fails():
    [stale] = problems(deltas(GAIN, a=(0.2, 0.1, 0.3)), current="p2")
    assert "benchmarked policy p1, but the policy checkpoint is now p2" in stale


def test_a_report_on_the_dev_split_fails():
    categories = ["a"]
    [dev] = promotion_problems(
        complete_verdicts(*categories),
        deltas(GAIN, a=(0.2, 0.1, 0.3)),
        candidate="policy",
        categories=categories,
        max_category_loss=0.01,
        evaluated_policy="p1",
        current_policy="p1",
        evaluated_split="dev",
    )
    assert "measured the 'dev' split" in dev and "set eval.split: bench" in dev


def test_the_release_job_ends_with_the_promotion():
    keys = defs.resolve_job_def("release").asset_layer.executable_asset_keys
    assert dg.AssetKey("promoted_policy") in keys


def candidate_of(policy: Path) -> pl.DataFrame:
    """The release report's candidate row naming `policy`, measured on bench."""
    return pl.DataFrame({"policy_id": [model_fingerprint(policy)], "checkpoint_uri": [str(policy)], "split": ["bench"]})


@pytest.fixture
def release(tmp_path):
    """A store holding a policy checkpoint and a release report of it that passes the gate."""
    store = LocalStore(tmp_path / "store")
    policy = store.local_path("policy_checkpoint/mixture")
    policy.mkdir(parents=True)
    (policy / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (policy / "model.safetensors").write_bytes(b"weights of night 1")
    store.write_table("release_report", "candidate", candidate_of(policy), schemas.RELEASE_CANDIDATE)
    store.write_table("release_report", "verdicts", complete_verdicts("color", "count"), schemas.BENCHMARK_VERDICTS)
    passing = deltas(GAIN, color=(0.1, 0.05, 0.15), count=(0.1, 0.05, 0.15))
    store.write_table("release_report", "deltas", passing, schemas.BENCHMARK_DELTAS)
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(store.root))}
    return store, policy, resources


def promote(resources) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        everything(resources), selection=["promoted_policy"], resources=resources, raise_on_error=False
    )


def failure(result: dg.ExecuteInProcessResult) -> str:
    """Why the promotion step failed, as the UI shows it."""
    [event] = [e for e in result.all_events if e.is_step_failure]
    return event.step_failure_data.user_failure_data.description


def test_a_passing_policy_is_promoted_and_a_failing_one_never_replaces_it(release):
    store, policy, resources = release
    first = promote(resources)
    assert first.success
    [event] = first.get_asset_materialization_events()
    promoted = store.local_checkpoint("promoted_policy", "mixture")
    assert (promoted / "model.safetensors").read_bytes() == b"weights of night 1"
    assert event.materialization.metadata["policy_id"].value == model_fingerprint(policy)

    (policy / "model.safetensors").write_bytes(b"weights of night 2")  # retrained; its report loses a category
    store.write_table("release_report", "candidate", candidate_of(policy), schemas.RELEASE_CANDIDATE)
    losing = deltas(GAIN, color=(0.3, 0.2, 0.4), count=(-0.1, -0.15, -0.05))
    store.write_table("release_report", "deltas", losing, schemas.BENCHMARK_DELTAS)
    second = promote(resources)
    assert not second.success and not second.get_asset_materialization_events()
    assert "category 'count' loses accuracy" in failure(second)
    assert (promoted / "model.safetensors").read_bytes() == b"weights of night 1"


def test_a_stale_nan_or_missing_report_promotes_nothing(release):
    store, policy, resources = release
    nan = deltas(GAIN, color=(0.1, 0.05, 0.15), count=(float("nan"),) * 3)
    store.write_table("release_report", "deltas", nan, schemas.BENCHMARK_DELTAS)
    assert "category 'count' is NaN" in failure(promote(resources))
    (policy / "model.safetensors").write_bytes(b"retrained after its report")
    assert "rematerialize release_report" in failure(promote(resources))
    store.local_path("release_report/deltas.parquet").unlink()
    assert "release_report for 'deltas' not found" in failure(promote(resources))
    assert not store.has_checkpoint("promoted_policy", "mixture")


def test_the_promotion_gate_check_fails_on_nan_deltas(release):
    store, _, resources = release
    nan = deltas(GAIN, color=(0.1, 0.05, 0.15), count=(float("nan"),) * 3)
    store.write_table("release_report", "deltas", nan, schemas.BENCHMARK_DELTAS)
    gate_check = dg.AssetCheckKey(dg.AssetKey("release_report"), "promotion_gate")
    result = dg.materialize(everything(resources), selection=dg.AssetSelection.checks(gate_check), resources=resources)
    [gate] = result.get_asset_check_evaluations()
    assert not gate.passed and "category 'count' is NaN" in gate.description
