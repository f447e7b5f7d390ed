"""Both benchmark assets' one step: models on the held-out split (eval.split) of some categories, progress in the
run's log, and the hack monitor's view of their responses."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation.answer_cache import BenchModel, models_answers
from vlm_rl_assets.evaluation.benchmarks import BenchJudging, bench_prompts, bench_scores
from vlm_rl_assets.evaluation.hack_monitor import bench_gaming
from vlm_rl_assets.evaluation.settings import EvalSettings
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.ui import Progress
from vlm_rl_assets.rollouts.open import open_engine
from vlm_rl_assets.store.base import Store


def bench_judging(config: PipelineConfig) -> BenchJudging:
    """The judge settings the categories' training verdicts used."""
    strict = frozenset(name for name, category in config.categories.items() if category.strict_format)
    return BenchJudging(config.judges.rule, config.judges.reference, strict)


def benchmark(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    models: dict[str, Path],
    categories: list[str],
    settings: EvalSettings | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The BENCHMARK_SCORES rows and greedy verdicts of each named model (see `bench_scores`), with `settings`
    (default: `eval`); a checkpoint's answers kept from an earlier benchmark are judged again, not generated again
    (`evaluation/answer_cache.py`)."""
    settings = settings or config.eval
    prompts, images, _ = load_images(
        context, config, store, bench_prompts(store, categories, settings.split), "benchmark"
    )
    answers = models_answers(
        store,
        [BenchModel(name, folder, model_fingerprint(folder)) for name, folder in models.items()],
        prompts,
        images,
        lambda model_dir: open_engine(config.engine, config.model, model_dir),
        config.engine.kind,
        settings,
        config.engine.seed,
        lambda label: Progress(context, label),
        context.log.info,
    )
    return bench_scores(prompts, answers, settings, bench_judging(config), config.engine.seed)


def flagged_bench(config: PipelineConfig, store: Store, verdicts: pl.DataFrame, categories: list[str]) -> pl.DataFrame:
    """The greedy bench responses with the gaming patterns each shows (`evaluation/hack_monitor.py`)."""
    return bench_gaming(
        verdicts, bench_prompts(store, categories, config.eval.split), config.eval.length_outlier_factor
    )
