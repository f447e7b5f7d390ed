"""Every asset's cost: what its body spent (`metering.Meter`), as `cost/<name>` metadata with the same keys on CPU
and GPU, and as a row of the store's costs table (`store/costs.py`), which release_report reads. The one place every
asset's metadata passes: its floats leave rounded (`orchestration/ui.py`'s `readable_metadata`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec

import dagster as dg

from vlm_rl_assets.metering import Meter, Usage
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.ui import readable_metadata
from vlm_rl_assets.store.costs import record_cost

P = ParamSpec("P")
COST_PREFIX = "cost/"


def cost_metadata(usage: Usage) -> dict[str, float | int]:
    """`cost/<field>` for every field of Usage, seconds and MiB to 0.01."""
    return {
        f"{COST_PREFIX}{name}": round(value, 2) if isinstance(value, float) else value
        for name, value in dataclasses.asdict(usage).items()
    }


def metered(
    fn: Callable[Concatenate[dg.AssetExecutionContext, PipelineResource, P], dg.MaterializeResult],
) -> Callable[Concatenate[dg.AssetExecutionContext, PipelineResource, P], dg.MaterializeResult]:
    """Wrap an asset body (context, then the pipeline resource): meter it, record the cost row, add the metadata.

    A GPU-pool step on a CUDA config holds the devices it sees (accelerator seconds); every other step holds none.
    A body that raises records nothing: its retry or rerun is the materialization that costs.
    """

    @functools.wraps(fn)
    def body(
        context: dg.AssetExecutionContext,
        pipeline: dg.ResourceParam[PipelineResource],
        *args: P.args,
        **kwargs: P.kwargs,
    ):
        on_accelerator = context.op_def.pool == GPU_POOL and pipeline.config.model.device != "cpu"
        with Meter(on_accelerator) as meter:
            result = fn(context, pipeline, *args, **kwargs)
        part = partition_slice(context)
        asset = context.asset_key.to_user_string()
        record_cost(pipeline.store, asset, part.category, meter.usage, context.run.run_id, part.pipeline_round)
        # every asset's metadata passes here: its floats rounded as people read them (readable.py)
        return result._replace(metadata=readable_metadata({**(result.metadata or {}), **cost_metadata(meter.usage)}))

    return body
