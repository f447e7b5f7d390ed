"""The whole graph through Dagster on a very small config, then one category rematerialized by the CLI; what its
metadata and the release report's page in the UI show is rounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from vlm_rl_assets.assets.release_report import NOT_COSTED
from vlm_rl_assets.evaluation.cost_report import cost_table, gain_per_cost
from vlm_rl_assets.metering import USAGE_FIELDS
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.readable import rounded
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.costs import ALL, latest_costs
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import CATEGORY_ASSETS, everything
from vlm_rl_assets_tests.test_ui import REPO, browse, dagster_webserver, visible_text, welcome_dialog

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
CATEGORIES = ("color", "count")
# more than 4 decimals and more than 2 significant digits: 0.6220000000000001, not 0.00018 (readable.py keeps a value
# below its last decimal to 2 significant digits)
TOO_PRECISE = re.compile(r"\d\.(?=\d{5})0*[1-9]\d{2,}")


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Path:
    """The pipeline run's instance, with the shipped dagster.yaml."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, dagster_home):
    root, home = tmp_path_factory.mktemp("store"), dagster_home
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(root))}
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        results = [
            dg.materialize(everything(resources), selection=["base_model"], instance=instance, resources=resources)
        ]
        for category in CATEGORIES:
            results.append(
                dg.materialize(
                    everything(resources),
                    selection=CATEGORY_ASSETS,
                    partition_key=category,
                    instance=instance,
                    resources=resources,
                )
            )
        results.append(
            dg.materialize(
                everything(resources),
                selection=["policy_checkpoint", "release_report"],
                instance=instance,
                resources=resources,
            )
        )
        yield root, results, resources


def metadata(results, asset: str) -> dict:
    for result in results:
        for event in result.get_asset_materialization_events():
            if event.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def test_every_asset_materializes(pipeline_run):
    root, results, _ = pipeline_run
    assert all(r.success for r in results)
    store = LocalStore(root)
    for category in CATEGORIES:
        prompts = store.read_table("prompt_mixture", category, schemas.PROMPTS)
        rollouts = store.read_table("rollouts", category, schemas.ROLLOUTS)
        assert rollouts.height == prompts.filter(pl.col("split") == "train").height * 6
        assert rollouts.select("prompt_id", "sample_idx").is_unique().all()
        filtered = store.read_table("filtered_rollouts", category, schemas.FILTERED_ROLLOUTS)
        assert filtered.height == rollouts.height  # every rollout kept or dropped with a reason
        assert (filtered["kept"] == filtered["drop_reason"].is_null()).all()
        pairs = store.read_table("judged_pairs", category, schemas.JUDGED_PAIRS)
        assert pairs.height > 0 and (pairs["margin"] >= 0.5).all()
        assert set(pairs["chosen"]) <= set(rollouts["response"])  # on-policy, never the ground truth
        assert (store.local_checkpoint("dpo_checkpoint", category) / "config.json").is_file()
        scores = store.read_table("benchmark_scores", category, schemas.BENCHMARK_SCORES)
        assert set(scores["model"]) == {"base", "dpo"} and (scores["n"] == 8).all()
        assert {"accuracy", "mean_score", "pass@1", "pass@8"} <= set(scores["metric"])
        accuracy = scores.filter(pl.col("metric") == "accuracy")
        assert ((accuracy["ci_low"] <= accuracy["value"]) & (accuracy["value"] <= accuracy["ci_high"])).all()
    report = store.read_table("release_report", "scores", schemas.BENCHMARK_SCORES)
    assert set(report["category"]) == set(CATEGORIES) and set(report["model"]) == {"base", "policy"}


def test_metadata_shows_counts_reasons_and_training_health(pipeline_run):
    _, results, _ = pipeline_run
    rollouts = metadata(results[1:2], "rollouts")
    assert (rollouts["shards_generated"], rollouts["shards_reused"]) == (3, 0)
    assert 0 < rollouts["diversity/distinct_1"] <= 1 and "diversity_histogram" in rollouts
    filtered = metadata(results[1:2], "filtered_rollouts")
    assert sum(filtered["rows_by_outcome"].values()) == filtered["rows"]
    dpo = metadata(results[1:2], "dpo_checkpoint")
    assert {"final/loss", "final/rewards/accuracies", "final/rewards/margins"} <= set(dpo)
    assert dpo["curves"].startswith("![training curves](data:image/png;base64,")
    assert dpo["reference_logps_computed"] == dpo["pairs"]  # first run on these pairs: computed and cached
    policy = metadata(results[3:], "policy_checkpoint")
    assert set(policy["pairs_per_category"]) == set(CATEGORIES)
    assert policy["reference_logps_computed"] == 0  # the mixture's pairs were cached by the dpo_checkpoint runs
    evaluations = [e for r in results for e in r.get_asset_check_evaluations() if e.check_name == "training_health"]
    checks = {e.asset_key.to_user_string(): e for e in evaluations}
    assert set(checks) == {"dpo_checkpoint", "policy_checkpoint"}
    assert all(isinstance(e.passed, bool) for e in checks.values())  # a warning either way: the checkpoint stays
    assert all({"alarms", "length_drift", "saturation_step"} <= set(e.metadata) for e in checks.values())
    report = metadata(results[3:], "release_report")
    low, high = report["mean_delta_accuracy_ci"]
    assert low <= report["mean_delta_accuracy"] <= high
    assert report["pass_at_k_curves"].startswith("![pass@k curves](data:image/png;base64,")
    [gate] = [e for r in results for e in r.get_asset_check_evaluations() if e.check_name == "promotion_gate"]
    assert isinstance(gate.passed, bool) and "overall_ci_low" in gate.metadata
    assert "gaming" in filtered and "gaming" in metadata(results[1:2], "benchmark_scores") and "gaming" in report
    monitors = [e for r in results for e in r.get_asset_check_evaluations() if e.check_name == "gaming_monitor"]
    assert sorted(e.asset_key.to_user_string() for e in monitors) == ["benchmark_scores"] * 2 + ["release_report"]
    assert all({"base_share", "trained_share", "rise", "base_rollouts_share"} <= set(e.metadata) for e in monitors)


def too_precise(value: object) -> list[str]:
    """The numbers in a metadata value shown too precisely (TOO_PRECISE; inline PNGs left out)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return TOO_PRECISE.findall(re.sub(r"data:image/png;base64,[^)]*", "", text))


def test_metadata_numbers_are_rounded_and_the_stored_tables_are_not(pipeline_run):
    root, results, _ = pipeline_run
    events = [e.materialization for r in results for e in r.get_asset_materialization_events()]
    events += [e for r in results for e in r.get_asset_check_evaluations()]
    shown = {(str(e.asset_key.to_user_string()), name): v.value for e in events for name, v in e.metadata.items()}
    precise = {key: found for key, value in shown.items() if (found := too_precise(value))}
    assert not precise, precise
    report = metadata(results, "release_report")
    assert re.fullmatch(r"[+-]\d+\.\d points \[[+-]\d+\.\d, [+-]\d+\.\d\]", report["mean_delta"]), report["mean_delta"]
    points_row = r"\| (color|count|overall) \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\] \| \d+ \|"
    assert all(re.fullmatch(points_row, row) for row in report["deltas"].splitlines()[2:]), report["deltas"]
    assert re.fullmatch(r"[+-]\d+\.\d points \[.*\]", metadata(results[1:2], "benchmark_scores")["delta"])
    deltas = LocalStore(root).read_table("release_report", "deltas", schemas.BENCHMARK_DELTAS)
    overall = deltas.filter(pl.col("category") == "overall").row(0, named=True)
    assert report["mean_delta_accuracy"] == rounded(overall["delta"])  # the table keeps the raw value
    assert report["mean_delta_accuracy_ci"] == [rounded(overall["ci_low"]), rounded(overall["ci_high"])]


def test_the_release_report_page_reads_rounded_without_a_welcome_dialog(pipeline_run, dagster_home, tmp_path):
    """The release report's page in the UI, on the pipeline run's instance: the headline delta in points, no number
    with more than 4 decimals, no first-open community dialog (the shipped dagster.yaml)."""
    with dagster_webserver(dagster_home, VLM_RL_CONFIG=str(CONFIG)) as url:
        text = visible_text(browse(f"{url}/assets/release_report", tmp_path, "--dump-dom"))
    assert "mean_delta" in text and "mean_policy_accuracy" in text and " points [" in text, text[:3000]
    assert not TOO_PRECISE.findall(text), TOO_PRECISE.findall(text)
    assert not welcome_dialog(text), text[:3000]


def test_every_materialization_records_its_cost_and_the_report_adds_them_up(pipeline_run):
    root, results, _ = pipeline_run
    events = [e for r in results for e in r.get_asset_materialization_events()]
    costs = {(e.asset_key.to_user_string(), e.partition or ALL): e.materialization.metadata for e in events}
    assert len(costs) == len(events) == 2 * len(CATEGORY_ASSETS) + 3  # base_model, the policy and its report
    assert all({f"cost/{name}" for name in USAGE_FIELDS} <= set(meta) for meta in costs.values())
    spent = {key: {name: meta[f"cost/{name}"].value for name in USAGE_FIELDS} for key, meta in costs.items()}
    for key, cost in spent.items():
        assert cost["wall_seconds"] > 0 and cost["cpu_seconds"] > 0 and cost["store_bytes_written"] > 0, key
        assert cost["accelerator_seconds"] == 0.0 and cost["accelerators"] == 0, key  # on CPU: the same keys, zero
    for category in CATEGORIES:
        assert spent["rollouts", category]["generated_tokens"] > 0
        dpo = spent["dpo_checkpoint", category]
        assert dpo["trained_tokens"] > 0 and dpo["train_examples"] > 0
        assert spent["benchmark_scores", category]["generated_tokens"] > 0  # greedy and sampled, base and dpo
    assert spent["rollouts", "color"]["generated_tokens"] == metadata(results[1:2], "rollouts")["generated_tokens"]
    dpo_pairs = metadata(results[1:2], "dpo_checkpoint")["pairs"]
    assert spent["dpo_checkpoint", "color"]["train_examples"] == dpo_pairs  # one epoch
    assert spent["base_model", ALL]["trained_tokens"] > 0 and spent["policy_checkpoint", ALL]["trained_tokens"] > 0
    # the store holds the same numbers, and the report's gain is over their sum
    latest = latest_costs(LocalStore(root))
    assert set(zip(latest["asset"], latest["category"])) == set(costs)
    total = cost_table(latest.filter(~pl.col("asset").is_in(NOT_COSTED))).row(-1, named=True)
    costed = [s for (asset, _), s in spent.items() if asset not in NOT_COSTED]
    assert total["generated_tokens"] == sum(s["generated_tokens"] for s in costed)
    assert total["trained_tokens"] == sum(s["trained_tokens"] for s in costed)
    report = metadata(results, "release_report")
    deltas = LocalStore(root).read_table("release_report", "deltas", schemas.BENCHMARK_DELTAS)
    overall = deltas.filter(pl.col("category") == "overall")["delta"][0]  # the raw value: metadata shows it rounded
    assert report["gain"] == gain_per_cost(overall, total).summary()
    assert report["gain/hour"] == "CPU-hour" and "gain/points_per_million_generated_tokens" in report
    assert report["costs"].count("\n| ") == len(costed) + 1  # a row per stage and category, then the total


def test_missing_upstream_partition_says_what_to_materialize(pipeline_run, tmp_path):
    _, _, _ = pipeline_run
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(tmp_path))}
    with pytest.raises(Exception, match="Materialize it first|materialize it first"):
        dg.materialize(
            everything(resources), selection=["filtered_rollouts"], partition_key="color", resources=resources
        )


def test_unknown_category_is_refused(tmp_path):
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(tmp_path))}
    with pytest.raises(Exception, match="nope"):
        dg.materialize(everything(resources), selection=["prompt_mixture"], partition_key="nope", resources=resources)


def test_cli_rematerializes_one_category_alone(pipeline_run, tmp_path):
    root, _, _ = pipeline_run
    store = LocalStore(root)
    before = {c: Path(store.table_uri("rollouts", c)).stat().st_mtime_ns for c in CATEGORIES}
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG.read_text() + f"storage: {{root: '{root}'}}\n")
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "VLM_RL_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path)}
    command = [
        str(Path(sys.executable).with_name("dagster")),
        *("asset", "materialize", "-m", "vlm_rl_assets.definitions", "--select", "rollouts", "--partition", "count"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(store.table_uri("rollouts", "count")).stat().st_mtime_ns > before["count"]
    assert Path(store.table_uri("rollouts", "color")).stat().st_mtime_ns == before["color"]


def test_undecodable_images_are_quarantined_then_fail_above_the_threshold(pipeline_run, tmp_path):
    root, _, _ = pipeline_run
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    store = LocalStore(copy)
    resources = {"pipeline": PipelineResource.from_file(str(CONFIG), str(copy))}
    train = store.read_table("prompt_mixture", "color", schemas.PROMPTS).filter(pl.col("split") == "train")
    (copy / train["images"][0][0]).write_bytes(b"\x89PNG truncated")
    result = dg.materialize(everything(resources), selection=["rollouts"], partition_key="color", resources=resources)
    assert metadata([result], "rollouts")["quarantined_prompts"] == 1
    assert store.read_table("rollouts", "color", schemas.ROLLOUTS)["prompt_id"].n_unique() == train.height - 1
    quarantined = store.read_table("quarantine", "rollouts/color", schemas.QUARANTINE)
    assert quarantined["key"].to_list() == [train["prompt_id"][0]] and quarantined["reason"][0].startswith(
        "image_undecodable"
    )
    (copy / train["images"][1][0]).write_bytes(b"")
    with pytest.raises(Exception, match=r"2 of 12 prompts have unusable images.*max_bad_fraction"):
        dg.materialize(everything(resources), selection=["rollouts"], partition_key="color", resources=resources)
