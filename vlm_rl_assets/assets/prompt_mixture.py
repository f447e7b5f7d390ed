"""prompt_mixture[c]: the category's prompts after its template, train and bench splits."""

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.core import quarantine, schemas
from vlm_rl_assets.core.prompts import build_prompt_table, word_count
from vlm_rl_assets.core.sources import synthetic_sources
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    partitions_def=category_partitions,
    group_name="data",
    kinds={"polars", "parquet"},
    description="Templated prompts per category (chain of thought for choice/number); short references dropped and counted.",
)
def prompt_mixture(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    cat = config.category(category)
    sources = synthetic_sources(store, cat.task, {"train": cat.n_train, "bench": cat.n_bench}, config.seed)
    prompts, dropped = build_prompt_table(category, cat.template, cat.min_response_words, sources)
    if prompts.filter(pl.col("split") == "train").is_empty():
        raise ValueError(
            f"category {category!r} has no train prompts left after filtering ({quarantine.reason_counts(dropped)}); "
            f"lower categories.{category}.min_response_words or add prompts"
        )
    store.write_table("prompt_mixture", category, prompts, schemas.PROMPTS)
    store.write_table("quarantine", f"prompt_mixture/{category}", dropped, schemas.QUARANTINE)
    split_counts = dict(prompts.group_by("split").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            "train_prompts": split_counts.get("train", 0),
            "bench_prompts": split_counts.get("bench", 0),
            "dropped": dropped.height,
            "dropped_by_reason": quarantine.reason_counts(dropped),
            "mean_reference_words": float(prompts["reference"].map_elements(word_count, return_dtype=pl.Int64).mean()),
            "template": cat.template,
            "preview": markdown_table(prompts.select("prompt_id", "split", "prompt_text", "reference"), 5),
        }
    )
