"""grpo_checkpoint[c]: under `training.algorithm: grpo`, online GRPO on category c's train prompts, each completion
rewarded by c's judge, from the model the round starts from (round 1: the base), which is also its KL reference. It
takes dpo_checkpoint[c]'s place in the graph; benchmark_scores[c] scores whichever the graph holds."""

import dagster as dg

from vlm_rl_assets.names import BASE_MODEL, GRPO_CHECKPOINT, PROMPT_MIXTURE
from vlm_rl_assets.orchestration.grpo_run import train_grpo
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.training_run import health_check_spec, round_models


@dg.asset(
    pool=GPU_POOL,
    deps=[PROMPT_MIXTURE, BASE_MODEL],
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec(GRPO_CHECKPOINT)],
    description="TRL GRPO on this category's train prompts, rewarded by its judge; a save_pretrained folder with its "
    "processor.",
)
@asset_step
def grpo_checkpoint(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part = partition_slice(context)
    start, _ = round_models(pipeline, part.pipeline_round)
    return train_grpo(context, pipeline, GRPO_CHECKPOINT, part.key(), [part.category], start)
