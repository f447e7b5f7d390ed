"""benchmark_scores[c]: greedy accuracy (with CIs) and pass@k of base and the category's trained checkpoint
(dpo_checkpoint[c], or grpo_checkpoint[c] under GRPO; with rounds, that round's) on c's benchmark split, the paired
delta, and the share of each model's responses with gaming patterns."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.evaluation.benchmarks import compare
from vlm_rl_assets.evaluation.hack_monitor import gaming_shares
from vlm_rl_assets.evaluation.stats import paired_deltas
from vlm_rl_assets.names import BASE_MODEL, BENCHMARK_SCORES, CATEGORY_CHECKPOINT, PROMPT_MIXTURE
from vlm_rl_assets.orchestration.benchmarking import benchmark, flagged_bench
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import markdown_table
from vlm_rl_assets.readable import delta_points, scores_as_read, seconds_value
from vlm_rl_assets.store import schemas


def score_the_category(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    category, key = part.category, part.key()
    trained = config.training.algorithm  # the trained model's name in the tables: the algorithm that trained it
    trained_dir = store.local_checkpoint(CATEGORY_CHECKPOINT[trained], key)
    start = time.monotonic()
    scores, verdicts = benchmark(
        context, config, store, {"base": pipeline.base_model_dir(), trained: trained_dir}, [category]
    )
    store.write_table(BENCHMARK_SCORES, key, scores, schemas.BENCHMARK_SCORES)
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


def benchmark_scores(trained: dg.AssetKey) -> dg.AssetsDefinition:
    """The asset on `trained`, the category's training step the graph holds (dpo_checkpoint or grpo_checkpoint)."""
    return dg.asset(
        name=BENCHMARK_SCORES,
        pool=GPU_POOL,
        deps=[trained, PROMPT_MIXTURE, BASE_MODEL],
        group_name="evaluation",
        kinds={"pytorch", "parquet"},
        description="Greedy accuracy (95% CI), pass@k and the paired delta of base vs. this category's trained "
        "checkpoint on held-out prompts.",
    )(asset_step(score_the_category))
