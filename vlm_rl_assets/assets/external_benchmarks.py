"""external_benchmarks: base vs. policy on standard benchmarks run by lmms-eval or VLMEvalKit (GPU deployments).

Unconfigured (`external_eval.harness: none`, the default) the step succeeds without a materialization and records
an AssetObservation whose `skipped` metadata says how to configure it: a materialization would claim a scores table
that does not exist, while leaving the asset out of the definitions would hide it where users look for it and tie the
asset graph to the config the code location happened to load (`output_required=False` makes the skip legal).
"""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.evaluation.benchmarks import compare
from vlm_rl_assets.evaluation.external_eval import evaluate
from vlm_rl_assets.names import BASE_MODEL, EXTERNAL_BENCHMARKS, POLICY_CHECKPOINT
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import markdown_table
from vlm_rl_assets.rounds.plan import latest_policy
from vlm_rl_assets.store import schemas

NOT_CONFIGURED = (
    "external_eval.harness is none. To run standard benchmarks on base and policy, set external_eval.harness to "
    "lmms_eval or vlmevalkit, list external_eval.tasks and install that harness where the GPU runs execute "
    "(README, 'Standard benchmarks on GPU deployments')."
)


@dg.asset(
    pool=GPU_POOL,
    deps=[BASE_MODEL, POLICY_CHECKPOINT],
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    output_required=False,
    description="Base vs. policy on standard benchmarks (lmms-eval or VLMEvalKit, external_eval:); skipped, "
    "not materialized, while external_eval.harness is none.",
)
def external_benchmarks(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    if pipeline.config.external_eval.harness == "none":
        context.log.warning(NOT_CONFIGURED)
        yield dg.AssetObservation(asset_key=context.asset_key, metadata={"skipped": NOT_CONFIGURED})
        return
    yield run_harness(context, pipeline)


@asset_step
def run_harness(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    """The configured harness on base, then policy; the scores table and the delta table."""
    config, store = pipeline.config, pipeline.store
    settings = config.external_eval
    models = {
        "base": pipeline.base_model_dir(),
        "policy": latest_policy(store, config.rounds.count),  # with rounds: the newest round's
    }
    work_root = Path(settings.work_dir or config.storage.cache_path / "external_eval")
    start = time.monotonic()
    scores = pl.concat(
        [
            evaluate(settings, name, folder, work_root / settings.harness / name, context.log.info)
            for name, folder in models.items()
        ]
    )
    store.write_table(EXTERNAL_BENCHMARKS, "scores", scores, schemas.BENCHMARK_SCORES)
    table = compare(scores, "policy").select("category", "metric", "base", "policy", "delta")
    return dg.MaterializeResult(
        metadata={
            "harness": settings.harness,
            "tasks": settings.tasks,
            "metrics": table.height,
            "deltas": markdown_table(table, 100),  # policy minus base, in the harness's own units
            "harness_seconds": round(time.monotonic() - start, 1),  # both models, model loading included
        }
    )
