"""release_report: base vs. the mixture policy on every category's benchmark split."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.policy_checkpoint import POLICY_KEY
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.runtime import bench_scores, compare
from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.core import schemas
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    pool=GPU_POOL,
    deps=["policy_checkpoint", "prompt_mixture"],
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    description="Base vs. policy greedy accuracy per category and on average.",
)
@retry_transient
def release_report(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    config, store = pipeline.config(), pipeline.store()
    policy_dir = store.local_checkpoint("policy_checkpoint", POLICY_KEY, partitioned=False)
    models = {"base": pipeline.base_model_dir(), "policy": policy_dir}
    start = time.monotonic()
    scores = bench_scores(context, config, store, models, list(config.categories))
    store.write_table("release_report", "scores", scores, schemas.BENCHMARK_SCORES)
    table = compare(scores, "policy")
    accuracy = table.filter(pl.col("metric") == "accuracy")
    return dg.MaterializeResult(
        metadata={
            "mean_base_accuracy": float(accuracy["base"].mean()),
            "mean_policy_accuracy": float(accuracy["policy"].mean()),
            "mean_delta_accuracy": float(accuracy["delta"].mean()),
            "worst_category_delta": float(accuracy["delta"].min()),
            "report": markdown_table(table, 50),
            "bench_seconds": round(time.monotonic() - start, 1),  # every model on every bench prompt
        }
    )
