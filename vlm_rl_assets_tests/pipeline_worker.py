"""The pipeline for one category in its own process, so its config's categories become the partitions.

    VLM_RL_CONFIG=CONFIG python -m vlm_rl_assets_tests.pipeline_worker STORE_ROOT CATEGORY[,CATEGORY...] [--release]

Materializes base_model, then every category stage of each CATEGORY, then with --release the release stages (the
policy and its report); prints each asset's metadata as JSON, a category stage's as `asset[category]` when several
categories ran.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets_tests.graphs import CATEGORY_ASSETS, RELEASE_ASSETS, everything


def main(root: str, categories: list[str], release: bool) -> None:
    resources = {"pipeline": PipelineResource(configured(), root)}
    runs = [("", dg.materialize(everything(resources), selection=["base_model"], resources=resources))]
    for category in categories:
        run = dg.materialize(
            everything(resources), selection=CATEGORY_ASSETS, partition_key=category, resources=resources
        )
        runs.append((f"[{category}]" if len(categories) > 1 else "", run))
    if release:
        runs.append(("", dg.materialize(everything(resources), selection=RELEASE_ASSETS, resources=resources)))
    metadata = {
        event.asset_key.to_user_string() + suffix: {k: v.value for k, v in event.materialization.metadata.items()}
        for suffix, run in runs
        for event in run.get_asset_materialization_events()
    }
    print(json.dumps(metadata, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), sys.argv[3:] == ["--release"])
