"""The partitions one config makes, and the slice of them a run works on.

One partition per task category, so any category reruns alone; with `rounds.count` > 1, one per category and round
for the category stages and one per round for the release stages, so any (category, round) reruns alone too. A
one-round pipeline has no round dimension. Built from the validated config by `graph.build_graph`, so partitions and
config never disagree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import dagster as dg

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.store.base import round_key
from vlm_rl_assets.store.costs import ALL

CATEGORY, ROUND = "category", "round"


@dataclass(frozen=True)
class Partitions:
    """The partitions of one config's categories and round count."""

    categories: tuple[str, ...]
    rounds: int = 1

    @classmethod
    def of(cls, config: PipelineConfig) -> Partitions:
        return cls(tuple(config.categories), config.rounds.count)

    @functools.cached_property
    def category(self) -> dg.PartitionsDefinition:
        """The category stages' (prompt_mixture through benchmark_scores): by category, and by round with rounds."""
        categories = dg.StaticPartitionsDefinition(list(self.categories))
        if self.rounds == 1:
            return categories
        return dg.MultiPartitionsDefinition({CATEGORY: categories, ROUND: self._rounds})

    @functools.cached_property
    def release(self) -> dg.PartitionsDefinition | None:
        """The release stages' (policy_checkpoint through promoted_policy): by round; none with one round."""
        return None if self.rounds == 1 else self._rounds

    @property
    def _rounds(self) -> dg.StaticPartitionsDefinition:
        return dg.StaticPartitionsDefinition([str(r) for r in range(1, self.rounds + 1)])

    def category_key(self, category: str, pipeline_round: int = 1) -> str:
        """The partition key of (category, round), as a run request or `dagster asset materialize --partition`
        takes it."""
        if self.rounds == 1:
            return category
        return dg.MultiPartitionKey({CATEGORY: category, ROUND: str(pipeline_round)})

    def release_key(self, pipeline_round: int = 1) -> str | None:
        return None if self.rounds == 1 else str(pipeline_round)


@dataclass(frozen=True)
class Slice:
    """The partition a run works on: a category in a round (a release stage's category is `all`)."""

    category: str
    pipeline_round: int = 1

    def key(self, name: str | None = None) -> str:
        """The store key of this category's (or of `name`'s) tables and checkpoints in this round."""
        return round_key(name or self.category, self.pipeline_round)


def partition_slice(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Slice:
    """The slice of a run's partition key: a category, a category|round, or a release stage's round (all digits: a
    category name starts with a letter)."""
    if not context.has_partition_key:
        return Slice(ALL)
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        return Slice(key.keys_by_dimension[CATEGORY], int(key.keys_by_dimension[ROUND]))
    if "|" in key:  # a multi-partition key as a plain string: its dimensions in name order
        category, pipeline_round = key.split("|")
        return Slice(category, int(pipeline_round))
    return Slice(ALL, int(key)) if key.isdigit() else Slice(key)
