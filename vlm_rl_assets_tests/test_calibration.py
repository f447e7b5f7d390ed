"""The judge calibration gate: agreement arithmetic, label files, and judged_pairs blocked by a failing check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from vlm_rl_assets.assets import judge_calibration
from vlm_rl_assets.config import load_config
from vlm_rl_assets.judging.calibration import (
    Agreement,
    calibrate,
    read_labels,
    reference_labels,
    with_responses,
)
from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun
from vlm_rl_assets.judging.rules import RuleJudge
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.prompts import world
from vlm_rl_assets.prompts.prompt_table import apply_template, reference_response
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.graphs import everything
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table

PROMPTS = prompt_table({"a": ("number", "2"), "b": ("number", "1")})


def labels(rows: list[tuple[str, str, bool]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows, schema={"prompt_id": pl.String, "response": pl.String, "label": pl.Boolean}, orient="row"
    )
    return frame.with_columns(sample_idx=pl.lit(None, dtype=pl.Int32))


def test_agreement_counts_f1_and_agreement():
    sample = labels(
        [("a", "Answer: 2", True), ("a", "Answer: 3", True), ("b", "Answer: 1", False), ("b", "Answer: 5", False)]
    )
    result = calibrate(sample, PROMPTS, RuleJudge())
    assert result.agreement == Agreement(true_pos=1, false_pos=1, false_neg=1, true_neg=1, failed=0)
    assert (result.agreement.f1, result.agreement.agreement, result.agreement.n) == (0.5, 0.5, 4)
    assert Agreement(0, 0, 0, 3, 0).f1 == 1.0  # nothing called right by either side: nothing to disagree on
    assert Agreement(0, 0, 0, 3, 1).f1 == 0.0  # ...unless the judge failed on a label
    assert result.judged.filter(pl.col("label") != pl.col("correct")).height == 2


class MostlyFailingJudge:
    """The rule judge's verdict on every 5th item; a failure (as a VLM endpoint timing out) on the rest."""

    name = "rule"
    pure = False  # its outcome depends on the item's position

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun:
        verdicts = RuleJudge().judge(items).outcomes
        return JudgeRun([v if i % 5 == 0 else JudgeFailure("timeout", "no answer") for i, v in enumerate(verdicts)])


def test_a_judge_failing_on_most_labels_fails_calibration():
    sample = labels([("a", "Answer: 2", True), ("b", "Answer: 2", False)] * 5)
    result = calibrate(sample, PROMPTS, MostlyFailingJudge())
    assert result.agreement == Agreement(true_pos=1, false_pos=0, false_neg=0, true_neg=1, failed=8)
    assert result.agreement.f1 == 0.2 and result.agreement.agreement == 0.2  # 1.0 on the two it scored
    assert result.failure_counts == {"timeout": 8}


def test_labels_by_sample_idx_take_the_rollouts_response(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"prompt_id": "a", "sample_idx": 1, "label": 1}\n{"prompt_id": "a", "sample_idx": 0, "label": 0}\n'
    )
    rollouts = rollout_table({"a": ["Answer: 3", "Answer: 2"]})
    filled = with_responses(read_labels(path), rollouts)
    assert filled.select("response", "label").rows() == [("Answer: 2", True), ("Answer: 3", False)]
    assert calibrate(filled, PROMPTS, RuleJudge()).agreement.f1 == 1.0
    with pytest.raises(ValueError, match="name no rollout"):
        with_responses(read_labels(path), rollout_table({"a": ["Answer: 3"]}))


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"prompt_id": "a", "response": "x"}\n', "needs prompt_id, label"),
        ('{"prompt_id": "a", "label": true}\n', "response or sample_idx"),
        ('{"prompt_id": "a", "response": "x", "label": 2}\n', "true/false or 1/0"),
        (
            '{"prompt_id": "a", "response": "x", "label": true}\n{"prompt_id": "a", "response": "y", "label": null}\n',
            "every label",
        ),
    ],
)
def test_bad_label_files_say_what_they_need(tmp_path, text, message):
    path = tmp_path / "labels.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_labels(path)


def test_labels_of_unknown_prompts_are_refused():
    with pytest.raises(ValueError, match="absent from this category's prompt table"):
        calibrate(labels([("zzz", "Answer: 1", True)]), PROMPTS, RuleJudge())


def synthetic_prompts(category: str, n: int = 60, template: str | None = None) -> pl.DataFrame:
    """A prompt table of one default category from its world task (image URIs are placeholders), in its
    configured template or `template`."""
    cat = load_config().category(category)
    template = template or cat.template
    rows = [
        {
            "prompt_id": f"{category}-{i}",
            "category": category,
            "split": "train",
            "question": item.question,
            "prompt_text": apply_template(template, item.question, item.answer_type),
            "answer": item.answer,
            "answer_type": item.answer_type,
            "reference": reference_response(template, item.answer, item.answer_type, item.rationale),
            "choices": list(item.choices),
            "images": [f"images/{category}-{i}.png"],
            "objects": [obj.name for obj in item.objects],
        }
        for i, item in enumerate(world.generate(cat.task, "train", n, seed=0))
    ]
    return pl.DataFrame(rows, schema=schemas.PROMPTS)


@pytest.mark.parametrize("template", [None, "plain"])  # plain: the short-answer ablation's letters and numbers
@pytest.mark.parametrize("category", list(load_config().categories))
def test_the_default_judges_agree_with_the_references_sample(category, template):
    prompts = synthetic_prompts(category, template=template)
    sample = reference_labels(prompts, seed=0)
    assert sample["label"].sum() == prompts.height and sample.height > 1.8 * prompts.height  # rights and wrongs
    judge = RuleJudge(name=load_config().category(category).judge)
    assert calibrate(sample, prompts, judge).agreement.f1 == 1.0


CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
GROUPS = {
    "a": ["I count one, two. Answer: 2", "I count one, two, three. Answer: 3"],
    "b": ["So one. Answer: 1", "So two. Answer: 2"],
}


def run_count_category(tmp_path: Path, label_rows: list[dict] | str | None) -> dg.ExecuteInProcessResult:
    """filtered_rollouts and judged_pairs of 'count' on stored prompts and rollouts, with these labels."""
    raw = yaml.safe_load(CONFIG.read_text())
    if isinstance(label_rows, list):
        pl.DataFrame(label_rows).write_parquet(tmp_path / "labels.parquet")
        label_rows = str(tmp_path / "labels.parquet")
    if label_rows is not None:
        raw["categories"]["count"]["calibration_labels"] = label_rows
    raw["categories"]["count"]["min_response_words"] = 1
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    store = LocalStore(tmp_path / "store")
    store.write_table("prompt_mixture", "count", PROMPTS, schemas.PROMPTS)
    store.write_table("rollouts", "count", rollout_table(GROUPS), schemas.ROLLOUTS)
    resources = {"pipeline": PipelineResource.from_file(str(tmp_path / "pipeline.yaml"), str(tmp_path / "store"))}
    selection = ["filtered_rollouts", "judged_pairs"]
    return dg.materialize(
        everything(resources), selection=selection, partition_key="count", resources=resources, raise_on_error=False
    )


def outcome(result: dg.ExecuteInProcessResult) -> tuple[dg.AssetCheckEvaluation, set[str]]:
    (check,) = result.get_asset_check_evaluations()
    return check, {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


AGREEING = [  # what the rule judge says of each rollout
    {"prompt_id": "a", "sample_idx": 0, "label": True},
    {"prompt_id": "a", "sample_idx": 1, "label": False},
    {"prompt_id": "b", "sample_idx": 0, "label": True},
    {"prompt_id": "b", "sample_idx": 1, "label": False},
]


def test_a_judge_that_agrees_with_the_labels_passes_and_pairs_are_made(tmp_path):
    result = run_count_category(tmp_path, AGREEING)
    check, materialized = outcome(result)
    assert result.success and check.passed and materialized == {"filtered_rollouts", "judged_pairs"}
    assert {k: check.metadata[k].value for k in ("f1", "agreement", "n")} == {"f1": 1.0, "agreement": 1.0, "n": 4}


def test_a_judge_that_disagrees_with_the_labels_blocks_judged_pairs(tmp_path):
    result = run_count_category(tmp_path, [{**row, "label": not row["label"]} for row in AGREEING])
    check, materialized = outcome(result)
    assert not result.success and not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert materialized == {"filtered_rollouts"}  # judged_pairs never ran
    assert (
        "F1 0.000 on 4 labelled responses" in check.description
        and "judged_pairs[count] does not run" in check.description
    )
    assert check.metadata["f1"].value == 0.0 and check.metadata["false_neg"].value == 2
    assert not LocalStore(tmp_path / "store").has_table("judged_pairs", "count")


def test_judge_failures_on_labels_fail_the_check_and_show_in_its_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(judge_calibration, "open_judge", lambda *args: MostlyFailingJudge())
    check, materialized = outcome(run_count_category(tmp_path, AGREEING))
    assert not check.passed and materialized == {"filtered_rollouts"}
    assert "F1 0.400 on 4 labelled responses (3 unscored: {'timeout': 3}, each a disagreement)" in check.description
    assert {k: check.metadata[k].value for k in ("f1", "n", "true_pos", "judge_failures")} == {
        "f1": 0.4,
        "n": 4,
        "true_pos": 1,
        "judge_failures": 3,
    }


def test_the_references_sample_runs_through_the_check(tmp_path):
    check, materialized = outcome(run_count_category(tmp_path, "references"))
    assert check.passed and check.metadata["n"].value == 4 and "judged_pairs" in materialized


def test_without_labels_the_check_warns_and_pairs_are_made(tmp_path):
    result = run_count_category(tmp_path, None)
    check, materialized = outcome(result)
    assert result.success and not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert materialized == {"filtered_rollouts", "judged_pairs"}
