"""dpo_checkpoint[c]: DPO on category c's pairs with c's beta and loss (the per-category experiment), from the model
the round sampled (round 1: the base). Under `training.algorithm: grpo` the graph holds grpo_checkpoint[c] instead."""

import dagster as dg

from vlm_rl_assets.dpo.train_pairs import train_pairs
from vlm_rl_assets.names import BASE_MODEL, DPO_CHECKPOINT, JUDGED_PAIRS
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.training_run import health_check, health_check_spec, round_models, training_metadata
from vlm_rl_assets.store import schemas


@dg.asset(
    pool=GPU_POOL,
    deps=[JUDGED_PAIRS, BASE_MODEL],
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec(DPO_CHECKPOINT)],
    description="TRL DPO on this category's pairs with its beta and loss; a save_pretrained folder with its processor.",
)
@asset_step
def dpo_checkpoint(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    category, key = part.category, part.key()
    start, reference = round_models(pipeline, part.pipeline_round)
    pairs = store.read_table(JUDGED_PAIRS, key, schemas.JUDGED_PAIRS)
    pairs, images, refused = load_images(context, config, store, pairs, DPO_CHECKPOINT)
    settings, loss = config.dpo_settings(category)
    trained = train_pairs(
        store,
        pairs,
        images,
        start,
        DPO_CHECKPOINT,
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
        check_results=[health_check(context, trained.health, f"{DPO_CHECKPOINT}[{key}]")],
    )
