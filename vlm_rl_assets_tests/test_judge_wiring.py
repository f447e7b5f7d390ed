"""Judges in the pipeline: rows a judge fails on are quarantined with the reason and counted in
filtered_rollouts' metadata, never scored 0; config names the judge and validates its settings."""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.evaluation.benchmarks import BenchJudging, bench_verdict
from vlm_rl_assets.judging.contract import JudgeItem
from vlm_rl_assets.judging.gaming import PATTERNS
from vlm_rl_assets.judging.open import open_judge
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.orchestration.benchmarking import bench_judging
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.pairs.filtering import filter_rollouts
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table
from vlm_rl_assets_tests.scripted_endpoint import GARBAGE, ScriptedEndpoint, scores


def test_rule_failures_are_returned_not_scored_and_the_rest_keep_their_reasons():
    prompts = prompt_table({"a": ("number", "2"), "b": ("number", "many")})  # b's ground truth is no number
    judged = score_rollouts(rollout_table({"a": ["Answer: 2", "Answer: 3"], "b": ["Answer: 2"]}), prompts)
    assert judged.failures == [("b/0", "answer_not_a_number: ground truth 'many' holds 0 numbers, not one")]
    assert judged.failure_counts == {"answer_not_a_number": 1}
    assert judged.scored["prompt_id"].to_list() == ["a", "a"] and judged.scored["score"].to_list() == [1.0, 0.0]
    filtered = filter_rollouts(judged.scored, min_words=1)
    assert filtered["judge_reason"].to_list() == ["answered 2, expected 2", "answered 3, expected 2"]


def write_config(path: Path, base_url: str, max_bad_fraction: float) -> Path:
    path.write_text(
        f"max_bad_fraction: {max_bad_fraction}\n"
        "categories:\n  scene: {source: 'synthetic:scene', judge: vlm}\n"
        "judges:\n"
        f"  vlm: {{base_url: '{base_url}', model: judge, timeout_s: 2, max_retries: 1, backoff_s: 0,\n"
        "         repeats: 2, concurrency: 1}\n"
    )
    return path


def seed_store(root: Path) -> None:
    """prompt_mixture and rollouts of `scene` as the upstream assets would leave them: 2 prompts x 2 samples."""
    store = LocalStore(root)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    uri = store.put_image(buffer.getvalue())
    prompts = prompt_table({"p0": ("open", "A red circle."), "p1": ("open", "A red circle.")}, category="scene")
    store.write_table("prompt_mixture", "scene", prompts.with_columns(images=pl.lit([uri])), schemas.PROMPTS)
    rollouts = rollout_table({"p0": ["A red circle.", "A blue star."], "p1": ["A red circle.", "Two green squares."]})
    store.write_table("rollouts", "scene", rollouts, schemas.ROLLOUTS)


def test_vlm_judge_failures_become_counted_quarantine_rows_and_leave_pairing(tmp_path):
    seed_store(tmp_path / "store")
    script = [
        scores(9, 9, 9),
        scores(9, 9, 8),  # p0/0
        scores(2, 3, 5),
        scores(2, 3, 5),  # p0/1
        scores(9, 9, 9),
        scores(8, 9, 9),  # p1/0
        GARBAGE,
        GARBAGE,  # p1/1, first repeat: malformed twice (1 + max_retries), so the row fails
        scores(1, 1, 1),  # p1/1, second repeat
    ]
    with ScriptedEndpoint(script) as endpoint:
        config = write_config(tmp_path / "pipeline.yaml", endpoint.base_url, max_bad_fraction=0.3)
        resources = {"pipeline": PipelineResource.from_file(str(config), str(tmp_path / "store"))}
        result = dg.materialize(
            everything(resources), selection=["filtered_rollouts"], partition_key="scene", resources=resources
        )
    store = LocalStore(tmp_path / "store")
    quarantined = store.read_table("quarantine", "filtered_rollouts/scene", schemas.QUARANTINE)
    assert quarantined["key"].to_list() == ["p1/1"] and quarantined["reason"][0].startswith(
        "vlm_malformed_json: 2 attempts"
    )
    filtered = store.read_table("filtered_rollouts", "scene", schemas.FILTERED_ROLLOUTS)
    assert "p1/1" not in (filtered["prompt_id"] + "/" + filtered["sample_idx"].cast(pl.String)).to_list()
    assert filtered.filter(pl.col("kept"))["prompt_id"].to_list() == ["p0", "p0"]  # p1 has no wrong answer left
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["judge"] == "vlm" and meta["judge_failures"] == 1
    assert meta["judge_failures_by_reason"] == {"vlm_malformed_json": 1}
    assert meta["judge_consistency"] == 1.0 and meta["judge_rank_agreement"] == 1.0


@pytest.mark.parametrize("max_bad_fraction", [0.3, 1.0])  # 1.0: all may fail, but then nothing is left to pair
def test_vlm_judge_failing_too_often_fails_the_stage_naming_the_quarantine(tmp_path, max_bad_fraction):
    seed_store(tmp_path / "store")
    with ScriptedEndpoint([GARBAGE] * 16) as endpoint:
        config = write_config(tmp_path / "pipeline.yaml", endpoint.base_url, max_bad_fraction=max_bad_fraction)
        resources = {"pipeline": PipelineResource.from_file(str(config), str(tmp_path / "store"))}
        expected = r"vlm judge failed on 4 of 4 rollouts.*vlm_malformed_json.*every one, so nothing is left to pair"
        with pytest.raises(Exception, match=expected + r".*quarantine"):
            dg.materialize(
                everything(resources), selection=["filtered_rollouts"], partition_key="scene", resources=resources
            )
    assert (
        LocalStore(tmp_path / "store").read_table("quarantine", "filtered_rollouts/scene", schemas.QUARANTINE).height
        == 4
    )


@pytest.mark.parametrize(
    "judges, message",
    [
        ("", "judges.vlm.model"),
        ("judges: {vlm: {model: m, max_retries: -1}}", "judges.vlm.max_retries"),
        ("judges: {vlm: {model: m, api_key: sk-123}}", "judges.vlm.api_key"),  # keys live in the environment only
    ],
)
def test_judge_settings_are_validated_on_load(tmp_path, judges, message):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"categories:\n  scene: {{source: 'synthetic:scene', judge: vlm}}\n{judges}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_strict_format_scores_unmarked_answers_wrong_and_filtered_rollouts_reports_compliance(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.write_table("prompt_mixture", "count", prompt_table({"a": ("number", "2")}), schemas.PROMPTS)
    responses = ["I count one, two. Answer: 2", "I count the shapes. So 2.", "one, two: \\boxed{2}", "Answer: 3"]
    store.write_table("rollouts", "count", rollout_table({"a": responses}), schemas.ROLLOUTS)
    config = tmp_path / "pipeline.yaml"
    config.write_text("categories:\n  count: {source: 'synthetic:count', template: cot, strict_format: true}\n")
    resources = {"pipeline": PipelineResource.from_file(str(config), str(tmp_path / "store"))}
    result = dg.materialize(
        everything(resources), selection=["filtered_rollouts"], partition_key="count", resources=resources
    )
    filtered = store.read_table("filtered_rollouts", "count", schemas.FILTERED_ROLLOUTS).sort("sample_idx")
    assert filtered["correct"].to_list() == [True, False, True, False]
    assert filtered["judge_reason"][1].startswith("format")
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["strict_format"] is True and meta["format_compliance"] == 0.75
    assert meta["gaming"] == dict.fromkeys([*PATTERNS, "any"], 0.0)  # the hack monitor's baseline: none hedges


@pytest.mark.parametrize(
    "category",
    [
        "{source: 'synthetic:count', strict_format: true}",  # plain: no 'Answer:' is instructed
        "{source: 'synthetic:count', template: cot, judge: vlm, strict_format: true}",  # not a rule judge
    ],
)
def test_strict_format_needs_the_cot_template_and_a_rule_judge(tmp_path, category):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"categories:\n  count: {category}\njudges: {{vlm: {{model: m}}}}\n")
    with pytest.raises(ConfigError, match="strict_format needs template: cot"):
        load_config(path)


def test_reference_synonyms_reach_the_open_judge(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "categories:\n  scene: {source: 'synthetic:scene', judge: reference}\n"
        "judges: {reference: {synonyms: {couch: sofa}}}\n"
    )
    config = load_config(path)
    judge = open_judge("reference", config.judges, config.model, load_image=lambda uri: Image.new("RGB", (1, 1)))
    item = JudgeItem("p/0", "p", "Describe the image.", "A dog on a couch.", "open", "", "", objects=["dog", "sofa"])
    assert judge.judge([item]).outcomes[0].correct


def bench_prompt(category: str, answer_type: str, answer: str, objects: list[str]) -> dict:
    return {"category": category, "answer_type": answer_type, "answer": answer, "choices": [], "objects": objects}


def test_bench_verdicts_are_judged_with_the_training_settings(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "categories:\n"
        "  count: {source: 'synthetic:count', template: cot, strict_format: true}\n"
        "  loose: {source: 'synthetic:count', template: cot}\n"
        "  scene: {source: 'synthetic:scene', judge: reference}\n"
        "judges: {reference: {synonyms: {couch: sofa}}, rule: {rel_tol: 0.1}}\n"
    )
    judging = bench_judging(load_config(path))
    vocabulary = {c: (frozenset(), frozenset()) for c in ("count", "loose")} | {
        "scene": (frozenset({"dog", "sofa", "cat"}), frozenset())
    }

    def verdict(category, answer_type, answer, response, objects=(), settings=judging):
        return bench_verdict(bench_prompt(category, answer_type, answer, list(objects)), response, vocabulary, settings)

    assert verdict("count", "number", "3", "There are 3 shapes.").reason.startswith("format")  # strict: unmarked
    assert verdict("count", "number", "3", "There are 3 shapes. Answer: 3").correct
    assert verdict("loose", "number", "3", "There are 3 shapes.").correct  # the same answer where not strict
    assert verdict("scene", "open", "", "A dog on a couch.", ["dog", "sofa"]).correct  # couch is a sofa
    assert not verdict("scene", "open", "", "A dog on a couch.", ["dog", "sofa"], BenchJudging()).correct
    assert verdict("loose", "number", "100", "Answer: 95").correct  # within judges.rule.rel_tol


def test_the_text_judge_reads_an_answer_against_its_categorys_text_answers_in_training_and_on_bench():
    """Rollouts and bench answers are judged with the category's text answers as candidates: an answer naming one
    of them is read as it ("Colour: dark red", no copula), one naming two is ambiguous whatever it affirms."""
    prompts = prompt_table({"p0": ("text", "dark red"), "p1": ("text", "light blue")}, category="color")
    responses = ["Colour: dark red", "dark red, not light blue", "It is light blue."]
    scored = score_rollouts(rollout_table({"p0": responses[:2], "p1": responses[2:]}), prompts).scored
    assert scored["correct"].to_list() == [True, False, True]
    assert scored["judge_reason"][1].startswith("ambiguous")
    vocabulary = {"color": (frozenset(), frozenset({"dark red", "light blue"}))}
    assert bench_verdict(prompts.row(0, named=True), responses[0], vocabulary, BenchJudging()).correct
