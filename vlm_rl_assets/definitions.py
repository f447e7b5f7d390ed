"""The Dagster code location: assets, jobs and resources of the DPO pipeline, and the research jobs."""

import dagster as dg

from vlm_rl_assets.assets.graph import ASSET_CHECKS, ASSETS, CATEGORY_ASSETS, PROMOTION_ASSETS, RELEASE_ASSETS
from vlm_rl_assets.automation import (
    alert_on_run_failure,
    next_round_when_round_gained,
    nightly_categories,
    release_when_categories_scored,
)
from vlm_rl_assets.research.runner import EXPERIMENT_JOBS
from vlm_rl_assets.resources import PipelineResource

category_job = dg.define_asset_job(
    "category_pipeline",
    selection=dg.AssetSelection.assets(*CATEGORY_ASSETS),
    description="Prompts to benchmark scores for one category (pick the partition).",
)
release_job = dg.define_asset_job(
    "release",
    selection=dg.AssetSelection.assets(*RELEASE_ASSETS, *PROMOTION_ASSETS),
    description="Mixture policy, its report, and its promotion if it passes the promotion gate (else the run fails "
    "saying why, and the last promoted policy stays).",
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[category_job, release_job, *EXPERIMENT_JOBS],  # experiments: the recipe's findings (docs/findings.md)
    schedules=[nightly_categories],
    sensors=[release_when_categories_scored, next_round_when_round_gained, alert_on_run_failure],
    resources={"pipeline": PipelineResource()},
)
