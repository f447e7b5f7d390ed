"""policy_checkpoint: DPO on the balanced mixture of every category's pairs (the release candidate)."""

import dagster as dg

from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.runtime import health_check_spec, train_pairs
from vlm_rl_assets.store import schemas
from vlm_rl_assets.dpo.mixture import balanced_mixture
from vlm_rl_assets.resources import PipelineResource

POLICY_KEY = "mixture"


@dg.asset(
    pool=GPU_POOL,
    deps=["judged_pairs", "base_model"],
    group_name="training",
    kinds={"pytorch", "trl"},
    check_specs=[health_check_spec("policy_checkpoint")],
    description="TRL DPO on the balanced mixture of all categories' pairs; the realised mixture in metadata.",
)
@retry_transient
def policy_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    config, store = pipeline.config(), pipeline.store()
    pairs = {c: store.read_table("judged_pairs", c, schemas.JUDGED_PAIRS) for c in config.categories}
    weights = {c: cat.mixture_weight for c, cat in config.categories.items()}
    mixture = balanced_mixture(pairs, weights, config.training.seed)
    # each pair trains with its own category's beta; the loss is training's for all (one loss per run)
    base_dir = pipeline.base_model_dir()
    metadata, health = train_pairs(context, config, store, mixture, base_dir, "policy_checkpoint", POLICY_KEY, config.training)
    realised = dict(mixture.group_by("category").len().sort("category").iter_rows())
    available = {c: df.height for c, df in pairs.items()}
    return dg.MaterializeResult(
        metadata={**metadata, "pairs_per_category": realised, "available_pairs": available}, check_results=[health]
    )
