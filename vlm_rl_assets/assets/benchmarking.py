"""Both benchmark assets' one step: models on the held-out split (eval.split) of some categories, progress in the run's log."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.images import load_images
from vlm_rl_assets.assets.ui import Progress
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation.benchmarks import bench_prompts, bench_scores
from vlm_rl_assets.rollouts.open import open_engine
from vlm_rl_assets.store.base import Store


def benchmark(
    context: dg.AssetExecutionContext, config: PipelineConfig, store: Store, models: dict[str, Path], categories: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The BENCHMARK_SCORES rows and greedy verdicts of each named model (see `bench_scores`)."""
    prompts, images, _ = load_images(context, config, store, bench_prompts(store, categories, config.eval.split), "benchmark")
    return bench_scores(
        prompts,
        images,
        models,
        lambda model_dir: open_engine(config.engine, config.model, model_dir),
        config.eval,
        config.engine.seed,
        lambda stage: Progress(context, stage),
    )
