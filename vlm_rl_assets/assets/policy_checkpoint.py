"""policy_checkpoint: DPO on the balanced mixture of every category's pairs (the release candidate), from the model the
round sampled (round 1: the base; with rounds, one per round); with `training.algorithm: grpo`, GRPO on the balanced
mixture of their train prompts, each rewarded by its category's judge."""

import dagster as dg

from vlm_rl_assets.assets.grpo_run import grpo_checkpoint
from vlm_rl_assets.assets.images import load_images
from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.training_run import health_check, health_check_spec, round_models, training_metadata
from vlm_rl_assets.dpo.train_pairs import train_pairs
from vlm_rl_assets.partitions import round_partitions, stage
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.rounds.plan import POLICY
from vlm_rl_assets.store import schemas
from vlm_rl_assets.training.mixture import policy_mixture

ASSET, POLICY_KEY = POLICY


@dg.asset(
    pool=GPU_POOL,
    partitions_def=round_partitions,
    deps=["judged_pairs", "prompt_mixture", "base_model"],  # prompt_mixture: GRPO samples its train prompts
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec(ASSET)],
    description="TRL DPO on the balanced mixture of all categories' pairs (training.algorithm: grpo: TRL GRPO on the "
    "mixture of their train prompts); the realised mixture in metadata.",
)
@retry_transient
@metered
def policy_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    run, config, store = stage(context), pipeline.config(), pipeline.store()
    key = run.key(POLICY_KEY)
    start, reference = round_models(pipeline, run.pipeline_round)
    if config.training.algorithm == "grpo":
        return grpo_checkpoint(context, pipeline, ASSET, key, list(config.categories), start)
    pairs = {c: store.read_table("judged_pairs", run.key(c), schemas.JUDGED_PAIRS) for c in config.categories}
    weights = {c: cat.mixture_weight for c, cat in config.categories.items()}
    settings, loss = config.dpo_settings()
    mixture = policy_mixture(pairs, weights, settings)
    loaded, images, refused = load_images(context, config, store, mixture, ASSET)
    # each pair trains with its own category's beta (its row's); the loss is training's for all (one loss per run)
    trained = train_pairs(
        store,
        loaded,
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
        metadata={
            **training_metadata(trained, refused),
            "pairs_per_category": dict(mixture.group_by("category").len().sort("category").iter_rows()),
            "available_pairs": {c: df.height for c, df in pairs.items()},
        },
        check_results=[health_check(context, trained.health, f"{ASSET}[{key}]")],
    )
