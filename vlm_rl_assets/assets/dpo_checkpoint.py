"""dpo_checkpoint[c]: DPO of the base model on category c's pairs with c's beta and loss (the per-category experiment);
with `training.algorithm: grpo`, GRPO on c's train prompts rewarded by c's judge instead."""

import dagster as dg

from vlm_rl_assets.assets.grpo_run import grpo_checkpoint
from vlm_rl_assets.assets.images import load_images
from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.training_run import health_check, health_check_spec, training_metadata
from vlm_rl_assets.dpo.train_pairs import train_pairs
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store import schemas

ASSET = "dpo_checkpoint"


@dg.asset(
    pool=GPU_POOL,
    partitions_def=category_partitions,
    deps=["judged_pairs", "prompt_mixture", "base_model"],  # prompt_mixture: GRPO samples its train prompts
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec(ASSET)],
    description="TRL DPO on this category's pairs with its beta and loss (training.algorithm: grpo: TRL GRPO on its "
    "train prompts, rewarded by its judge); a save_pretrained folder with its processor.",
)
@retry_transient
@metered
def dpo_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    if config.training.algorithm == "grpo":
        return grpo_checkpoint(context, pipeline, ASSET, category, [category])
    pairs, images, refused = load_images(context, config, store, store.read_table("judged_pairs", category, schemas.JUDGED_PAIRS), ASSET)
    trained = train_pairs(
        store, pairs, images, pipeline.base_model_dir(), ASSET, category, config.dpo_settings(category),
        model=config.model, engine=config.engine, health=config.training_health, cache_dir=config.storage.cache_path,
        log=context.log.info,
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata=training_metadata(trained, refused), check_results=[health_check(context, trained.health, f"{ASSET}[{category}]")]
    )
