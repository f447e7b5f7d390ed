"""prompt_mixture[c]: the category's prompts (synthetic or the user's dataset) after its rewrites and template."""

import dagster as dg
import polars as pl

from vlm_rl_assets.names import PROMPT_MIXTURE
from vlm_rl_assets.orchestration.chance_refusal import refuse_at_chance
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import Progress, markdown_table
from vlm_rl_assets.prompts.category import category_prompts
from vlm_rl_assets.prompts.prompt_table import word_count
from vlm_rl_assets.readable import rounded
from vlm_rl_assets.store import quarantine, schemas


@dg.asset(
    group_name="data",
    kinds={"polars", "parquet"},
    description="Prompts per category from a synthetic task or a dataset (Parquet shards, a datasets save_to_disk "
    "folder, JSONL or JSON; native, LLaVA, TRL messages or option-column layout; bad rows quarantined), "
    "rewritten (chain of thought, multiple choice to open) and templated into disjoint train, dev and bench splits "
    "(a dataset's bootstrap rows, the embedded base's SFT rows, left out); short references dropped and counted.",
)
@asset_step
def prompt_mixture(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    category = partition_slice(context).category  # the prompts are the same in every round
    config, store = pipeline.config, pipeline.store
    cat = config.category(category)
    refuse_at_chance(config, store, category, PROMPT_MIXTURE)
    progress = Progress(context, f"{PROMPT_MIXTURE}[{category}] prompts")
    loaded, table = category_prompts(store, category, config.prompt_spec(category), progress=progress)
    refused = quarantine.rows(PROMPT_MIXTURE, category, loaded.refused)
    store.write_table(
        "quarantine", f"{PROMPT_MIXTURE}/{category}", pl.concat([refused, table.dropped]), schemas.QUARANTINE
    )
    where = store.table_uri("quarantine", f"{PROMPT_MIXTURE}/{category}")
    if refused.height > config.max_bad_fraction * loaded.rows:
        raise ValueError(
            f"{PROMPT_MIXTURE}[{category}]: {refused.height} of {loaded.rows} rows of {cat.source} refused "
            f"({quarantine.code_counts(refused)}), above max_bad_fraction={config.max_bad_fraction}. See {where} "
            "(key = file:row, with the reason); fix those rows, or raise max_bad_fraction"
        )
    if refused.height:
        context.log.warning(
            f"{PROMPT_MIXTURE}[{category}]: refused {refused.height} rows: {quarantine.code_counts(refused)}"
        )
    prompts = table.prompts.filter(pl.col("split") != "bootstrap")  # base_model's SFT rows, never rolled out
    if prompts.filter(pl.col("split") == "train").is_empty():
        raise ValueError(
            f"category {category!r} has no train prompts left ({quarantine.code_counts(table.dropped)} dropped, "
            f"{refused.height} rows refused; see {where}); lower categories.{category}.min_response_words or add prompts"
        )
    store.write_table(PROMPT_MIXTURE, category, prompts, schemas.PROMPTS)
    split_counts = dict(prompts.group_by("split").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            "source": cat.source,
            "train_prompts": split_counts.get("train", 0),
            "dev_prompts": split_counts.get("dev", 0),
            "bench_prompts": split_counts.get("bench", 0),
            "bootstrap_rows_left_out": table.prompts.height - prompts.height,
            "input_rows": loaded.rows,
            **(progress.metadata("load") if not cat.synthetic else {}),
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
