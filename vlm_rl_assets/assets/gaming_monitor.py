"""The hack monitor as the UI shows it: a `gaming_monitor` WARN check on benchmark_scores[c] and on release_report.

Each compares the trained model's greedy bench responses with the base model's on the same prompts (same decoding:
apples to apples) and warns when the share showing a gaming pattern rises by more than `eval.max_gaming_rise`;
the base rollouts' share is shown beside it as context. A warning, not a block: the judge may be right and the
patterns honest, which only reading the examples tells.
"""

import dagster as dg
import polars as pl

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation.hack_monitor import flagged_examples, gaming_problems, gaming_rises
from vlm_rl_assets.evaluation.promotion import CANDIDATE
from vlm_rl_assets.judging.gaming import ANY, rollout_gaming
from vlm_rl_assets.names import BENCHMARK_SCORES, FILTERED_ROLLOUTS, GAMING_MONITOR, PROMPT_MIXTURE, RELEASE_REPORT
from vlm_rl_assets.orchestration.benchmarking import flagged_bench
from vlm_rl_assets.orchestration.partitions import Partitions, partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.ui import markdown_table, readable_metadata
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

DESCRIPTION = (
    "Warns when the share of the trained model's greedy bench responses with a gaming pattern (several answers "
    "named, echoed options, final answers that disagree, length outliers) exceeds the base model's on the same "
    "prompts by more than eval.max_gaming_rise."
)


def rollouts_share(config: PipelineConfig, store: Store, category: str) -> float | None:
    """The base rollouts' share with any gaming pattern (None before filtered_rollouts[category] exists)."""
    if not store.has_table(FILTERED_ROLLOUTS, category):
        return None
    rollouts = store.read_table(FILTERED_ROLLOUTS, category, schemas.FILTERED_ROLLOUTS)
    prompts = store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS)
    return rollout_gaming(rollouts, prompts, config.eval.length_outlier_factor).get(ANY)


def gaming_check(
    config: PipelineConfig, store: Store, verdicts: pl.DataFrame, categories: list[str], candidate: str
) -> dg.AssetCheckResult:
    """The monitor's decision on stored verdicts of base and `candidate`, with the numbers and examples behind it."""
    flagged = flagged_bench(config, store, verdicts, categories)
    rises = gaming_rises(flagged, candidate)
    problems = gaming_problems(rises, config.eval.max_gaming_rise)
    context = pl.Series("rollouts", [rollouts_share(config, store, c) for c in rises["category"]], pl.Float64)
    shown = rises.with_columns(context).with_columns(pl.col("base", "trained", "rise").round(3))
    worst = shown.sort("rise", descending=True).row(0, named=True) if shown.height else {}
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or None,
        metadata=readable_metadata(
            {
                "worst_category": worst.get("category"),
                "base_share": worst.get("base"),
                "trained_share": worst.get("trained"),
                "rise": worst.get("rise"),
                "base_rollouts_share": worst.get("rollouts"),  # context: the rollouts DPO trained on
                "max_gaming_rise": config.eval.max_gaming_rise,
                "rises": markdown_table(shown, 50),
                "examples": markdown_table(flagged_examples(flagged, candidate), 5),
            }
        ),
    )


def watch_a_category(
    context: dg.AssetCheckExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.AssetCheckResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    verdicts = store.read_table("benchmark_verdicts", part.key(), schemas.BENCHMARK_VERDICTS)
    return gaming_check(config, store, verdicts, [part.category], config.training.algorithm)  # the trained model


def watch_the_release(
    context: dg.AssetCheckExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.AssetCheckResult:
    config, store = pipeline.config, pipeline.store
    verdicts = store.read_table(RELEASE_REPORT, partition_slice(context).key("verdicts"), schemas.BENCHMARK_VERDICTS)
    return gaming_check(config, store, verdicts, list(config.categories), CANDIDATE)


def category_gaming_monitor(partitions: Partitions) -> dg.AssetChecksDefinition:
    """The check on benchmark_scores[c]."""
    return dg.asset_check(
        asset=BENCHMARK_SCORES,
        name=GAMING_MONITOR,
        blocking=False,
        partitions_def=partitions.category,
        description=DESCRIPTION,
    )(watch_a_category)


def release_gaming_monitor(partitions: Partitions) -> dg.AssetChecksDefinition:
    """The check on release_report."""
    return dg.asset_check(
        asset=RELEASE_REPORT,
        name=GAMING_MONITOR,
        blocking=False,
        partitions_def=partitions.release,
        description=DESCRIPTION,
    )(watch_the_release)
