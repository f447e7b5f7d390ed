"""policy_checkpoint: DPO on the balanced mixture of every category's pairs (the release candidate)."""

import dagster as dg

from vlm_rl_assets.assets.runtime import train_pairs
from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.mixture import balanced_mixture
from vlm_rl_assets.resources import PipelineResource

POLICY_KEY = "mixture"


@dg.asset(
    deps=["judged_pairs", "base_model"],
    group_name="training",
    kinds={"pytorch", "trl"},
    description="TRL DPO on the balanced mixture of all categories' pairs; the realised mixture in metadata.",
)
def policy_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    config, store = pipeline.config(), pipeline.store()
    pairs = {c: store.read_table("judged_pairs", c, schemas.JUDGED_PAIRS) for c in config.categories}
    weights = {c: cat.mixture_weight for c, cat in config.categories.items()}
    mixture = balanced_mixture(pairs, weights, config.training.seed)
    # TRL 1.16 takes one beta per run: the mixture trains with the pair-weighted mean of the category betas
    beta = float(mixture["beta"].mean())
    metadata = train_pairs(context, config, store, mixture, pipeline.base_model_dir(), "policy_checkpoint", POLICY_KEY, beta)
    realised = dict(mixture.group_by("category").len().sort("category").iter_rows())
    return dg.MaterializeResult(
        metadata={**metadata, "pairs_per_category": realised, "available_pairs": {c: df.height for c, df in pairs.items()}}
    )
