"""judged_pairs[c]: chosen/rejected pairs from the model's own samples, with the category's beta."""

import dagster as dg
import polars as pl

from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.pairing import make_pairs
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["filtered_rollouts"],
    group_name="pairs",
    kinds={"polars", "parquet"},
    description="Best-vs-worst pairs of the model's own samples with score margin >= pairing.min_margin.",
)
def judged_pairs(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    cat = config.category(category)
    pairs = make_pairs(
        store.read_table("filtered_rollouts", category, schemas.FILTERED_ROLLOUTS),
        store.read_table("prompt_mixture", category, schemas.PROMPTS),
        min_margin=config.pairing.min_margin,
        max_pairs_per_prompt=config.pairing.max_pairs_per_prompt,
        beta=cat.beta,
        judge_name=cat.judge,
    )
    if pairs.is_empty():
        raise ValueError(
            f"judged_pairs[{category}]: no pairs; no group held a right and a wrong answer with margin >= "
            f"{config.pairing.min_margin}. Check filtered_rollouts' drop reasons; sample more per prompt "
            f"(categories.{category}.samples_per_prompt) or lower pairing.min_margin"
        )
    store.write_table("judged_pairs", category, pairs, schemas.JUDGED_PAIRS)
    mean_words = pairs.select(pl.col("chosen", "rejected").str.split(" ").list.len().mean()).row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "pairs": pairs.height,
            "prompts_with_pairs": pairs["prompt_id"].n_unique(),
            "mean_margin": float(pairs["margin"].mean()),
            "mean_chosen_score": float(pairs["chosen_score"].mean()),
            "mean_rejected_score": float(pairs["rejected_score"].mean()),
            "mean_chosen_words": mean_words["chosen"],
            "mean_rejected_words": mean_words["rejected"],
            "on_policy_fraction": float(pairs["on_policy"].mean()),
            "beta": cat.beta,
            "judge": cat.judge,
        }
    )
