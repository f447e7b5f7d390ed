"""The partitions, read from the pipeline config: one per task category, so any category reruns alone; with
`rounds.count` > 1, one per category and round for the category stages and one per round for the release stages,
so any (category, round) reruns alone too. A one-round pipeline has no round dimension."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from vlm_rl_assets.config import load_config
from vlm_rl_assets.store.base import round_key
from vlm_rl_assets.store.costs import ALL

CATEGORY, ROUND = "category", "round"

_config = load_config()
ROUNDS = _config.rounds.count
CATEGORIES = list(_config.categories)
_categories = dg.StaticPartitionsDefinition(CATEGORIES)
_rounds = dg.StaticPartitionsDefinition([str(r) for r in range(1, ROUNDS + 1)])

# the category stages: prompt_mixture through benchmark_scores
category_partitions: dg.PartitionsDefinition = (
    _categories if ROUNDS == 1 else dg.MultiPartitionsDefinition({CATEGORY: _categories, ROUND: _rounds})
)
# the release stages (policy_checkpoint, release_report, promoted_policy): none with one round
round_partitions: dg.PartitionsDefinition | None = None if ROUNDS == 1 else _rounds


@dataclass(frozen=True)
class Stage:
    """What a run of a category stage works on: a category in a round."""

    category: str
    pipeline_round: int = 1

    def key(self, name: str | None = None) -> str:
        """The store key of this category's (or of `name`'s) tables and checkpoints in this round."""
        return round_key(name or self.category, self.pipeline_round)


def stage(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Stage:
    """The (category, round) a run works on; a release stage's category is `all`."""
    if not context.has_partition_key:
        return Stage(ALL)
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        return Stage(key.keys_by_dimension[CATEGORY], int(key.keys_by_dimension[ROUND]))
    if "|" in key:  # a multi-partition key as a plain string: its dimensions in name order
        category, pipeline_round = key.split("|")
        return Stage(category, int(pipeline_round))
    return Stage(ALL, int(key)) if ROUNDS > 1 else Stage(key)


def category_partition_key(category: str, pipeline_round: int = 1) -> str:
    """The partition key of (category, round), as a run request or `dagster asset materialize --partition` takes it."""
    if ROUNDS == 1:
        return category
    return dg.MultiPartitionKey({CATEGORY: category, ROUND: str(pipeline_round)})


def release_partition_key(pipeline_round: int = 1) -> str | None:
    return None if ROUNDS == 1 else str(pipeline_round)
