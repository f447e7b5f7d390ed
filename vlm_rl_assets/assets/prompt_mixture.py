"""prompt_mixture[c]: the category's prompts (synthetic or the user's dataset) after its rewrites and template."""

from collections.abc import Collection

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import retry_transient
from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation import chance
from vlm_rl_assets.partitions import category_partitions, stage
from vlm_rl_assets.prompts.prompt_table import PromptTable, SourceLoad, build_prompt_table, word_count
from vlm_rl_assets.prompts.sources import load_sources
from vlm_rl_assets.readable import rounded
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import Store

STAGE = "prompt_mixture"


def category_prompts(
    config: PipelineConfig, store: Store, category: str, skip: Collection[str] = ()
) -> tuple[SourceLoad, PromptTable]:
    """The category's sources (`config.prompt_splits`, the splits in `skip` not read) templated into its prompt
    table: prompt_mixture's prompts, and the same rows base_model SFT-trains and checks a dataset category on."""
    cat = config.category(category)
    sizes, fractions = config.prompt_splits(category)
    loaded = load_sources(store, cat.source, {s: n for s, n in sizes.items() if s not in skip}, config.seed, fractions)
    table = build_prompt_table(
        category,
        cat.template,
        cat.min_response_words,
        loaded.sources,
        mcq_to_open=cat.mcq_to_open,
        require_objects=cat.judge == "reference",
    )
    return loaded, table


def refuse_at_chance(config: PipelineConfig, store: Store, category: str, stage: str) -> None:
    """Fail `stage` of `category` when base_model found the base at chance on it (its stored verdict for this
    model.path), unless `categories.<c>.allow_chance_base` says go."""
    if config.category(category).allow_chance_base:
        return
    if why := chance.refusal(store, category, config.model.path, stage):
        override = f"categories.{category}.allow_chance_base: true"
        raise dg.Failure(description=why, metadata={"category": category, "override": override})


@dg.asset(
    partitions_def=category_partitions,
    group_name="data",
    kinds={"polars", "parquet"},
    description="Prompts per category from a synthetic task or a Parquet/JSONL dataset (bad rows quarantined), "
    "rewritten (chain of thought, multiple choice to open) and templated into disjoint train, dev and bench splits "
    "(a dataset's bootstrap rows, the embedded base's SFT rows, left out); short references dropped and counted.",
)
@retry_transient
@metered
def prompt_mixture(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = stage(context).category  # the prompts are the same in every round
    config, store = pipeline.config(), pipeline.store()
    cat = config.category(category)
    refuse_at_chance(config, store, category, STAGE)
    loaded, table = category_prompts(config, store, category)
    refused = quarantine.rows(STAGE, category, loaded.refused)
    store.write_table("quarantine", f"{STAGE}/{category}", pl.concat([refused, table.dropped]), schemas.QUARANTINE)
    where = store.table_uri("quarantine", f"{STAGE}/{category}")
    if refused.height > config.max_bad_fraction * loaded.rows:
        raise ValueError(
            f"{STAGE}[{category}]: {refused.height} of {loaded.rows} rows of {cat.source} refused "
            f"({quarantine.code_counts(refused)}), above max_bad_fraction={config.max_bad_fraction}. See {where} "
            "(key = file:row, with the reason); fix those rows, or raise max_bad_fraction"
        )
    if refused.height:
        context.log.warning(f"{STAGE}[{category}]: refused {refused.height} rows: {quarantine.code_counts(refused)}")
    prompts = table.prompts.filter(pl.col("split") != "bootstrap")  # base_model's SFT rows, never rolled out
    if prompts.filter(pl.col("split") == "train").is_empty():
        raise ValueError(
            f"category {category!r} has no train prompts left ({quarantine.code_counts(table.dropped)} dropped, "
            f"{refused.height} rows refused; see {where}); lower categories.{category}.min_response_words or add prompts"
        )
    store.write_table(STAGE, category, prompts, schemas.PROMPTS)
    split_counts = dict(prompts.group_by("split").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            "source": cat.source,
            "train_prompts": split_counts.get("train", 0),
            "dev_prompts": split_counts.get("dev", 0),
            "bench_prompts": split_counts.get("bench", 0),
            "bootstrap_rows_left_out": table.prompts.height - prompts.height,
            "input_rows": loaded.rows,
            "refused_rows": refused.height,
            "refused_by_reason": quarantine.code_counts(refused),
            "dropped": table.dropped.height,
            "dropped_by_reason": quarantine.code_counts(table.dropped),
            "rewrites": table.rewrites,
            "mean_reference_words": rounded(
                prompts["reference"].map_elements(word_count, return_dtype=pl.Int64).mean(), 1
            ),
            "template": cat.template,
            "preview": markdown_table(prompts.select("prompt_id", "split", "prompt_text", "reference"), 5),
        }
    )
