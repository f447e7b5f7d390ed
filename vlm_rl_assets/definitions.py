"""The Dagster code location: assets, jobs and resources of the DPO pipeline."""

import dagster as dg

from vlm_rl_assets.assets.base_model import base_model
from vlm_rl_assets.assets.benchmark_scores import benchmark_scores
from vlm_rl_assets.assets.dpo_checkpoint import dpo_checkpoint
from vlm_rl_assets.assets.external_benchmarks import external_benchmarks
from vlm_rl_assets.assets.filtered_rollouts import filtered_rollouts
from vlm_rl_assets.assets.judge_calibration import judge_calibration
from vlm_rl_assets.assets.judged_pairs import judged_pairs
from vlm_rl_assets.assets.policy_checkpoint import policy_checkpoint
from vlm_rl_assets.assets.prompt_mixture import prompt_mixture
from vlm_rl_assets.assets.release_report import promotion_gate, release_report
from vlm_rl_assets.assets.rollouts import rollouts
from vlm_rl_assets.experiments import EXPERIMENT_JOBS
from vlm_rl_assets.automation import alert_on_run_failure, nightly_categories, release_when_categories_scored
from vlm_rl_assets.resources import PipelineResource

CATEGORY_ASSETS = [prompt_mixture, rollouts, filtered_rollouts, judged_pairs, dpo_checkpoint, benchmark_scores]
# judge_calibration is blocking: a judge that fails calibration stops judged_pairs; promotion_gate: release or not
ASSET_CHECKS = [judge_calibration, promotion_gate]
ASSETS = [base_model, *CATEGORY_ASSETS, policy_checkpoint, release_report, external_benchmarks]
ALL_ASSETS = [*ASSETS, *ASSET_CHECKS]  # what dg.materialize takes: checks run with the assets they check

category_job = dg.define_asset_job(
    "category_pipeline",
    selection=dg.AssetSelection.assets(*CATEGORY_ASSETS),
    description="Prompts to benchmark scores for one category (pick the partition).",
)
release_job = dg.define_asset_job(
    "release", selection=dg.AssetSelection.assets(policy_checkpoint, release_report), description="Mixture policy and its report."
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[category_job, release_job, *EXPERIMENT_JOBS],  # experiments: the recipe's findings (docs/findings.md)
    schedules=[nightly_categories],
    sensors=[release_when_categories_scored, alert_on_run_failure],
    resources={"pipeline": PipelineResource()},
)
