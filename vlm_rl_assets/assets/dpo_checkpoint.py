"""dpo_checkpoint[c]: DPO of the base model on category c's pairs with c's beta (the per-category experiment)."""

import dagster as dg

from vlm_rl_assets.assets.runtime import train_pairs
from vlm_rl_assets.core import schemas
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["judged_pairs", "base_model"],
    group_name="training",
    kinds={"pytorch", "trl"},
    description="TRL DPO on this category's pairs with its beta; a save_pretrained folder with its processor.",
)
def dpo_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    pairs = store.read_table("judged_pairs", category, schemas.JUDGED_PAIRS)
    beta = config.category(category).beta
    metadata = train_pairs(context, config, store, pairs, pipeline.base_model_dir(), "dpo_checkpoint", category, beta)
    return dg.MaterializeResult(metadata=metadata)
