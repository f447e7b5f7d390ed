"""dpo_checkpoint[c]: DPO of the base model on category c's pairs with c's beta and loss (the per-category experiment)."""

import dagster as dg

from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.runtime import health_check_spec, train_pairs
from vlm_rl_assets.store import schemas
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    pool=GPU_POOL,
    partitions_def=category_partitions,
    deps=["judged_pairs", "base_model"],
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec("dpo_checkpoint")],
    description="TRL DPO on this category's pairs with its beta and loss; a save_pretrained folder with its processor.",
)
@retry_transient
def dpo_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    pairs = store.read_table("judged_pairs", category, schemas.JUDGED_PAIRS)
    loss = config.category(category).loss or config.training
    base_dir = pipeline.base_model_dir()
    metadata, health = train_pairs(context, config, store, pairs, base_dir, "dpo_checkpoint", category, loss)
    return dg.MaterializeResult(metadata=metadata, check_results=[health])
