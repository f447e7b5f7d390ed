"""dpo_checkpoint[c]: DPO on category c's pairs with c's beta and loss (the per-category experiment), from the model
the round sampled (round 1: the base); with `training.algorithm: grpo`, GRPO on c's train prompts rewarded by c's
judge instead."""

import dagster as dg

from vlm_rl_assets.assets.grpo_run import grpo_checkpoint
from vlm_rl_assets.assets.images import load_images
from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.training_run import health_check, health_check_spec, round_models, training_metadata
from vlm_rl_assets.dpo.train_pairs import train_pairs
from vlm_rl_assets.partitions import category_partitions, stage
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
    run, config, store = stage(context), pipeline.config(), pipeline.store()
    category, key = run.category, run.key()
    start, reference = round_models(pipeline, run.pipeline_round)
    if config.training.algorithm == "grpo":
        return grpo_checkpoint(context, pipeline, ASSET, key, [category], start)
    pairs, images, refused = load_images(
        context, config, store, store.read_table("judged_pairs", key, schemas.JUDGED_PAIRS), ASSET
    )
    settings, loss = config.dpo_settings(category)
    trained = train_pairs(
        store,
        pairs,
        images,
        start,
        ASSET,
        key,
        settings,
        loss,
        model=config.model,
        engine=config.engine,
        health=config.training_health,
        cache_dir=config.storage.cache_path,
        log=context.log.info,
        reference_dir=reference,
    )
    return dg.MaterializeResult(
        metadata=training_metadata(trained, refused),
        check_results=[health_check(context, trained.health, f"{ASSET}[{key}]")],
    )
