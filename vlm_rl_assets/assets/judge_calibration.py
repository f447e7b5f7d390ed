"""judge_calibration[c]: the category's judge against a labelled sample, a blocking check on
filtered_rollouts: below `calibration_min_f1` it fails with ERROR severity and judged_pairs does not
run, so a judge that disagrees with its labels never produces DPO pairs.

With `calibration_labels: human` the labels are those people gave on the review page (reviewing/labels.py): fewer
current ones than `calibration_min_labels` fail with ERROR too, saying how many more are needed; labels of rollouts
regenerated since are left out and counted.

Without `categories.<c>.calibration_labels` the check fails with WARN severity (not blocking): the
judge is uncalibrated, which the UI should show, but a pipeline without labels still runs.
"""

import dagster as dg
import polars as pl

from vlm_rl_assets.config import CategoryConfig
from vlm_rl_assets.judging import calibration
from vlm_rl_assets.judging.open import open_judge
from vlm_rl_assets.names import FILTERED_ROLLOUTS, JUDGE_CALIBRATION, PROMPT_MIXTURE, ROLLOUTS
from vlm_rl_assets.orchestration.partitions import Partitions, partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.ui import markdown_table, readable_metadata
from vlm_rl_assets.reviewing.labels import LABELS_ASSET, human_labels
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

DESCRIPTION = (
    "F1 and agreement of the category's judge with calibration_labels, a label it cannot score counted as a "
    "disagreement; below calibration_min_f1 judged_pairs is blocked."
)


def calibrate_the_judge(
    context: dg.AssetCheckExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.AssetCheckResult:
    category = partition_slice(context).category  # calibrated on round 1's rollouts, for every round
    config, store = pipeline.config, pipeline.store
    cat = config.category(category)
    if cat.calibration_labels is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"judge not calibrated: set categories.{category}.calibration_labels to a labelled "
            "sample (.parquet/.jsonl), 'human' (labels given on the review page) or 'references'",
            metadata={"labels": "none"},
        )
    prompts = store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS)
    human = {}  # calibration_labels: human: how many labels there are, are needed, and were left out as stale
    if cat.calibration_labels == calibration.REFERENCES:
        labels = calibration.reference_labels(prompts, config.seed)
    elif cat.calibration_labels == calibration.HUMAN:
        labels, human = _human_labels(store, category, cat.calibration_min_labels)
        if human["labels_needed"]:
            return _too_few_labels(category, cat, labels, human)
    else:
        labels = calibration.read_labels(cat.calibration_labels)
        if labels["response"].null_count():  # labelled by sample_idx: the response is the rollout's
            labels = calibration.with_responses(labels, store.read_table(ROLLOUTS, category, schemas.ROLLOUTS))
    judge = open_judge(cat.judge, config.judges, config.model, store.load_image, cat.strict_format)
    return _verdict(category, cat, calibration.calibrate(labels, prompts, judge), human)


def _too_few_labels(category: str, cat: CategoryConfig, labels: pl.DataFrame, human: dict) -> dg.AssetCheckResult:
    stale = f", {human['labels_stale']} stale ones left out" if human["labels_stale"] else ""
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{labels.height} human labels of current rollouts{stale}; "
        f"categories.{category}.calibration_min_labels is {cat.calibration_min_labels}. Label "
        f"{human['labels_needed']} more on the review page (`python -m vlm_rl_assets.review serve`), then "
        f"rerun this check; judged_pairs[{category}] does not run after this failure",
        metadata={"labels": calibration.HUMAN, "judge": cat.judge, **human},
    )


def _verdict(category: str, cat: CategoryConfig, result: calibration.Calibration, human: dict) -> dg.AssetCheckResult:
    """Pass when the judge's F1 on the labels reaches calibration_min_f1; the numbers and disagreements shown."""
    agreement = result.agreement
    if agreement.n == 0:
        problem = "the labelled sample has no rows"
    elif agreement.f1 < cat.calibration_min_f1:
        unscored = (
            f" ({agreement.failed} unscored: {result.failure_counts}, each a disagreement)" if agreement.failed else ""
        )
        problem = f"the {cat.judge} judge's F1 {agreement.f1:.3f} on {agreement.n} labelled responses{unscored} is "
        problem += f"below calibration_min_f1={cat.calibration_min_f1}; the disagreements are in this check's metadata"
    else:
        problem = None
    disagreements = result.judged.filter(pl.col("label") != pl.col("correct"))
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=problem
        and f"{problem}. Fix the judge (judges.{cat.judge}) or the labels "
        f"(categories.{category}.calibration_labels); judged_pairs[{category}] does not run after this failure",
        metadata=readable_metadata(
            {
                "labels": cat.calibration_labels,
                "judge": cat.judge,
                **human,
                "f1": round(agreement.f1, 3),
                "agreement": round(agreement.agreement, 3),
                "min_f1": cat.calibration_min_f1,
                "n": agreement.n,
                "true_pos": agreement.true_pos,
                "false_pos": agreement.false_pos,
                "false_neg": agreement.false_neg,
                "true_neg": agreement.true_neg,
                "judge_failures": agreement.failed,
                "judge_failures_by_reason": result.failure_counts,
                "disagreements": markdown_table(disagreements),
            }
        ),
    )


def _human_labels(store: Store, category: str, min_labels: int) -> tuple[pl.DataFrame, dict]:
    """The labels of current rollouts, and what the check shows of them."""
    human = human_labels(store, category)
    return human.labels, {
        "human_labels": human.labels.height,
        "labels_needed": max(min_labels - human.labels.height, 0),
        "min_labels": min_labels,
        "labels_stale": human.stale.height,
        **({"stale_labels": markdown_table(human.stale, max_chars=60)} if human.stale.height else {}),
        "labels_replaced": human.replaced,
        "labels_file": store.table_uri(LABELS_ASSET, category),
    }


def judge_calibration(partitions: Partitions) -> dg.AssetChecksDefinition:
    """The blocking check on filtered_rollouts[c]."""
    return dg.asset_check(
        asset=FILTERED_ROLLOUTS,
        name=JUDGE_CALIBRATION,
        blocking=True,
        partitions_def=partitions.category,
        description=DESCRIPTION,
    )(calibrate_the_judge)
