"""benchmark_scores[c]: greedy accuracy of base and dpo_checkpoint[c] on c's benchmark split, and the delta."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.runtime import bench_scores, compare
from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.core import schemas
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    pool=GPU_POOL,
    partitions_def=category_partitions,
    deps=["dpo_checkpoint", "prompt_mixture", "base_model"],
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    description="Greedy benchmark accuracy of base vs. this category's DPO checkpoint on held-out prompts.",
)
@retry_transient
def benchmark_scores(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    dpo_dir = store.local_checkpoint("dpo_checkpoint", category)
    start = time.monotonic()
    scores = bench_scores(context, config, store, {"base": pipeline.base_model_dir(), "dpo": dpo_dir}, [category])
    store.write_table("benchmark_scores", category, scores, schemas.BENCHMARK_SCORES)
    accuracy = compare(scores, "dpo").filter(pl.col("metric") == "accuracy").row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "base_accuracy": accuracy["base"],
            "dpo_accuracy": accuracy["dpo"],
            "delta_accuracy": accuracy["delta"],
            "n": int(scores["n"][0]),
            "scores": markdown_table(compare(scores, "dpo")),
            "bench_seconds": round(time.monotonic() - start, 1),  # every model on every bench prompt
        }
    )
