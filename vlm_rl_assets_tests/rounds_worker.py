"""Rounds of the pipeline in their own process, so the config's `rounds` become the partitions.

    DAGSTER_HOME=HOME VLM_RL_CONFIG=CONFIG python -m vlm_rl_assets_tests.rounds_worker FIRST LAST

Materializes base_model (when FIRST is 1), then rounds FIRST..LAST as the demo does; prints, as JSON, the partition
keys (and run keys) the next-round and release sensors would request now.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from vlm_rl_assets.automation import next_round_request, release_request
from vlm_rl_assets.config import configured
from vlm_rl_assets.demo import materialize, materialize_rounds
from vlm_rl_assets.graph import build_graph
from vlm_rl_assets.orchestration.resources import PipelineResource


def main(first: int, last: int) -> None:
    instance = dg.DagsterInstance.get()
    config = configured()
    graph, pipeline = build_graph(config), PipelineResource(config)
    if first == 1:
        materialize(graph, pipeline, ["base_model"], instance)
    materialize_rounds(graph, pipeline, instance, range(first, last + 1))
    next_round = next_round_request(instance, graph.partitions)
    release = release_request(instance, graph.partitions)
    print(
        json.dumps(
            {
                "next_round": [(str(r.partition_key), r.run_key) for r in next_round]
                if isinstance(next_round, list)
                else [],
                "release": release.partition_key if isinstance(release, dg.RunRequest) else None,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
