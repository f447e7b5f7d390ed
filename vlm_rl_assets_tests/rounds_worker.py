"""Rounds of the pipeline in their own process, so the config's `rounds` become the partitions.

    DAGSTER_HOME=HOME VLM_RL_CONFIG=CONFIG python -m vlm_rl_assets_tests.rounds_worker FIRST LAST

Materializes base_model (when FIRST is 1), then rounds FIRST..LAST as the demo does; prints, as JSON, the partition
keys (and run keys) the next-round and release sensors would request now.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from vlm_rl_assets.automation import next_round_when_round_gained, release_when_categories_scored
from vlm_rl_assets.demo import materialize, materialize_rounds


def main(first: int, last: int) -> None:
    instance = dg.DagsterInstance.get()
    if first == 1:
        materialize(["base_model"], instance)
    materialize_rounds(instance, range(first, last + 1))
    context = dg.build_sensor_context(instance=instance)
    next_round = next_round_when_round_gained(context)
    release = release_when_categories_scored(context)
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
