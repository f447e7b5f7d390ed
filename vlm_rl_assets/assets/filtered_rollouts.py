"""filtered_rollouts[c]: every rollout scored by rule, kept or dropped with its reason."""

import dagster as dg
import polars as pl

from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.filtering import drop_counts, filter_rollouts, score_rollouts
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["rollouts"],
    group_name="rollouts",
    kinds={"polars", "parquet"},
    description="Rollouts scored by rule; short, duplicate and no-right/wrong-split groups dropped with reasons.",
)
def filtered_rollouts(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    prompts = store.read_table("prompt_mixture", category, schemas.PROMPTS)
    scored = score_rollouts(store.read_table("rollouts", category, schemas.ROLLOUTS), prompts)
    filtered = filter_rollouts(scored, config.category(category).min_response_words)
    store.write_table("filtered_rollouts", category, filtered, schemas.FILTERED_ROLLOUTS)
    group_pass_rate = filtered.group_by("prompt_id").agg(pl.col("correct").mean())["correct"]
    kept_groups = filtered.filter("kept")["prompt_id"].n_unique()
    return dg.MaterializeResult(
        metadata={
            "rows": filtered.height,
            "rows_by_outcome": drop_counts(filtered),
            "groups_kept": kept_groups,
            "groups_total": filtered["prompt_id"].n_unique(),
            "sample_accuracy": float(filtered["correct"].mean()),
            "mean_score": float(filtered["score"].mean()),
            "groups_all_right": int((group_pass_rate == 1.0).sum()),
            "groups_all_wrong": int((group_pass_rate == 0.0).sum()),
        }
    )
