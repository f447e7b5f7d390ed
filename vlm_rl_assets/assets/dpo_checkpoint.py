"""dpo_checkpoint[c]: DPO on category c's pairs with c's beta and loss (the per-category experiment), from the model
the round sampled (round 1: the base). Under `training.algorithm: grpo` the graph holds grpo_checkpoint[c] instead."""

import dagster as dg

from vlm_rl_assets.names import BASE_MODEL, DPO_CHECKPOINT, JUDGED_PAIRS
from vlm_rl_assets.orchestration.dpo_run import train_dpo
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.training_run import health_check_spec, round_models
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
    part = partition_slice(context)
    models = round_models(pipeline, part.pipeline_round)
    pairs = pipeline.store.read_table(JUDGED_PAIRS, part.key(), schemas.JUDGED_PAIRS)
    settings = pipeline.config.dpo_settings(part.category)
    return train_dpo(context, pipeline, DPO_CHECKPOINT, part.key(), models, pairs, settings)
