"""A category at chance on the base, in its own process (its config's categories are the partitions):

    VLM_RL_CONFIG=CONFIG python -m vlm_rl_assets_tests.chance_worker STORE_ROOT CATEGORY ALLOWING_CONFIG

Materializes base_model, then CATEGORY's prompt_mixture and rollouts each twice: with CONFIG (expected to refuse) and
with ALLOWING_CONFIG (the same with `allow_chance_base: true`). Prints base_model's metadata and warnings, and each
step's failure message or metadata, as JSON.
"""

from __future__ import annotations

import json
import logging
import sys

import dagster as dg

from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets_tests.graphs import everything


def outcome(result: dg.ExecuteInProcessResult) -> dict:
    if result.success:
        [event] = result.get_asset_materialization_events()
        return {"metadata": {k: v.value for k, v in event.materialization.metadata.items()}}
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    return {"failure": data.user_failure_data.description if data.user_failure_data else data.error.message}


def main(root: str, category: str, allowing: str) -> None:
    refusing = {"pipeline": PipelineResource(configured(), root)}
    allowed = {"pipeline": PipelineResource.from_file(allowing, root)}
    out = {}
    with dg.instance_for_test() as instance:
        base = dg.materialize(everything(refusing), selection=["base_model"], resources=refusing, instance=instance)
        out["base_model"] = outcome(base)
        logs = instance.all_logs(base.run_id)
        out["base_model"]["warnings"] = [e.user_message for e in logs if e.level >= logging.WARNING]
        for asset in ("prompt_mixture", "rollouts"):
            for name, resources in (("refused", refusing), ("allowed", allowed)):
                result = dg.materialize(
                    everything(resources),
                    selection=[asset],
                    partition_key=category,
                    resources=resources,
                    instance=instance,
                    raise_on_error=False,
                )
                out[f"{asset}/{name}"] = outcome(result)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
