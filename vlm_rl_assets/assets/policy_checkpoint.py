"""policy_checkpoint: the release candidate, trained on every category at once from the model the round sampled
(round 1: the base; with rounds, one per round): DPO on the balanced mixture of their pairs, or under
`training.algorithm: grpo` GRPO on the balanced mixture of their train prompts, each rewarded by its category's
judge."""

import dagster as dg

from vlm_rl_assets.names import BASE_MODEL, JUDGED_PAIRS, POLICY_CHECKPOINT, POLICY_KEY, PROMPT_MIXTURE
from vlm_rl_assets.orchestration.dpo_run import train_dpo
from vlm_rl_assets.orchestration.grpo_run import train_grpo
from vlm_rl_assets.orchestration.partitions import Slice, partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.training_run import health_check_spec, round_models
from vlm_rl_assets.store import schemas
from vlm_rl_assets.training.mixture import policy_mixture


@dg.asset(
    pool=GPU_POOL,
    deps=[JUDGED_PAIRS, PROMPT_MIXTURE, BASE_MODEL],  # prompt_mixture: GRPO samples its train prompts
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec(POLICY_CHECKPOINT)],
    description="TRL DPO on the balanced mixture of all categories' pairs (training.algorithm: grpo: TRL GRPO on the "
    "mixture of their train prompts); the realised mixture in metadata.",
)
@asset_step
def policy_checkpoint(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config = partition_slice(context), pipeline.config
    if config.training.algorithm == "grpo":
        start, _ = round_models(pipeline, part.pipeline_round)
        key = part.key(POLICY_KEY)
        return train_grpo(context, pipeline, POLICY_CHECKPOINT, key, list(config.categories), start)
    return dpo_on_the_mixture(context, pipeline, part)


def dpo_on_the_mixture(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, part: Slice
) -> dg.MaterializeResult:
    """Each pair with its own category's beta (its row's); the loss is training's for all (one loss per run)."""
    config = pipeline.config
    models = round_models(pipeline, part.pipeline_round)
    pairs = {c: pipeline.store.read_table(JUDGED_PAIRS, part.key(c), schemas.JUDGED_PAIRS) for c in config.categories}
    weights = {c: cat.mixture_weight for c, cat in config.categories.items()}
    settings = config.dpo_settings()
    mixture = policy_mixture(pairs, weights, settings[0])
    realised = {
        "pairs_per_category": dict(mixture.group_by("category").len().sort("category").iter_rows()),
        "available_pairs": {c: df.height for c, df in pairs.items()},
    }
    key = part.key(POLICY_KEY)
    return train_dpo(context, pipeline, POLICY_CHECKPOINT, key, models, mixture, settings, realised)
