"""The Dagster code location: one config, read once from `$VLM_RL_CONFIG` (else the bundled default), and everything
built from it by `build_defs`: the assets on its partitions, the jobs, the nightly schedule, the sensors, the
`pipeline` resource and the research jobs."""

import dagster as dg

from vlm_rl_assets.automation import CATEGORY_JOB, RELEASE_JOB, automation
from vlm_rl_assets.config import PipelineConfig, configured
from vlm_rl_assets.graph import build_graph
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.research.runner import experiment_jobs


def build_defs(config: PipelineConfig, storage_root: str = "") -> dg.Definitions:
    """Everything the code location serves, from one validated config (`storage_root`: another than its own)."""
    graph = build_graph(config)
    category_job = dg.define_asset_job(
        CATEGORY_JOB,
        selection=dg.AssetSelection.assets(*graph.category_assets),
        description="Prompts to benchmark scores for one category (pick the partition).",
    )
    release_job = dg.define_asset_job(
        RELEASE_JOB,
        selection=dg.AssetSelection.assets(*graph.release_assets, *graph.promotion_assets),
        description="Mixture policy, its report, and its promotion if it passes the promotion gate (else the run "
        "fails saying why, and the last promoted policy stays).",
    )
    schedules, sensors = automation(graph.partitions)
    return dg.Definitions(
        assets=graph.assets,
        asset_checks=graph.checks,
        # experiments: the recipe's findings (docs/findings.md)
        jobs=[category_job, release_job, *experiment_jobs()],
        schedules=schedules,
        sensors=sensors,
        resources={"pipeline": PipelineResource(config, storage_root)},
    )


defs = build_defs(configured())
