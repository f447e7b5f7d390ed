"""benchmark_scores[c]: greedy accuracy (with CIs) and pass@k of base and dpo_checkpoint[c] (with rounds, that round's)
on c's benchmark split, the paired delta, and the share of each model's responses with gaming patterns."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.benchmarking import benchmark, flagged_bench
from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.evaluation.benchmarks import compare
from vlm_rl_assets.evaluation.hack_monitor import gaming_shares
from vlm_rl_assets.evaluation.stats import paired_deltas
from vlm_rl_assets.partitions import category_partitions, stage
from vlm_rl_assets.readable import delta_points, scores_as_read, seconds_value
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store import schemas


@dg.asset(
    pool=GPU_POOL,
    partitions_def=category_partitions,
    deps=["dpo_checkpoint", "prompt_mixture", "base_model"],
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    description="Greedy accuracy (95% CI), pass@k and the paired delta of base vs. this category's DPO checkpoint "
    "on held-out prompts.",
)
@retry_transient
@metered
def benchmark_scores(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    run, config, store = stage(context), pipeline.config(), pipeline.store()
    category, key = run.category, run.key()
    dpo_dir = store.local_checkpoint("dpo_checkpoint", key)
    trained = config.training.algorithm  # the trained model's name in the tables: the algorithm that trained it
    start = time.monotonic()
    scores, verdicts = benchmark(
        context, config, store, {"base": pipeline.base_model_dir(), trained: dpo_dir}, [category]
    )
    store.write_table("benchmark_scores", key, scores, schemas.BENCHMARK_SCORES)
    store.write_table("benchmark_verdicts", key, verdicts, schemas.BENCHMARK_VERDICTS)  # every response, to inspect
    table = compare(scores, trained)
    accuracy = table.filter(pl.col("metric") == "accuracy").row(0, named=True)
    delta = paired_deltas(verdicts, trained, seed=config.engine.seed).row(0, named=True)
    pass_at_k = table.filter(pl.col("metric").str.starts_with("pass@")).select("metric", "base", trained, "delta")
    shown = scores_as_read(table.filter(~pl.col("metric").str.starts_with("pass@")), ["base", trained])
    return dg.MaterializeResult(
        metadata={
            # the headline: paired (same prompts, per-item difference), in points with its 95% CI
            "delta": delta_points(delta["delta"], delta["ci_low"], delta["ci_high"]),
            "base_accuracy": accuracy["base"],
            "base_accuracy_ci": [accuracy["base_ci_low"], accuracy["base_ci_high"]],
            f"{trained}_accuracy": accuracy[trained],
            f"{trained}_accuracy_ci": [accuracy[f"{trained}_ci_low"], accuracy[f"{trained}_ci_high"]],
            "delta_accuracy": delta["delta"],
            "delta_accuracy_ci": [delta["ci_low"], delta["ci_high"]],
            "n": int(scores["n"][0]),
            "pass_at_k": markdown_table(scores_as_read(pass_at_k, ["base", trained]), 64),
            "scores": markdown_table(shown),
            # share of greedy responses per gaming pattern; the gaming_monitor check warns on its rise
            "gaming": markdown_table(gaming_shares(flagged_bench(config, store, verdicts, [category]))),
            "bench_seconds": seconds_value(time.monotonic() - start),  # every model on every bench prompt
        }
    )
