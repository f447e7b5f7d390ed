"""What to run when an upstream output is missing: the store raises `MissingUpstreamError` naming the asset and its
store key, and the assets' steps add the `dagster asset materialize` command that makes it, with its partition."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from vlm_rl_assets import names
from vlm_rl_assets.orchestration.partitions import Partitions
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.store.base import MissingUpstreamError, split_round_key

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")

UNPARTITIONED = frozenset({names.BASE_MODEL, names.EXTERNAL_BENCHMARKS})
RELEASE = frozenset({names.POLICY_CHECKPOINT, names.RELEASE_REPORT, names.ROUND_GAIN, names.PROMOTED_POLICY})


def materialize_command(asset: str, key: str, partitions: Partitions) -> str:
    """The CLI call that makes `asset`'s output under store `key`: its partition (a category, 'category|round', or
    a release stage's round) where the asset has one."""
    command = f"dagster asset materialize -m vlm_rl_assets.definitions --select {asset}"
    category, pipeline_round = split_round_key(key)
    if asset in UNPARTITIONED:
        partition = None
    elif asset in RELEASE:
        partition = partitions.release_key(pipeline_round)
    elif partitions.rounds == 1:
        partition = category
    else:
        partition = f"'{category}|{pipeline_round}'"  # quoted: a shell pipe otherwise
    return f"`{command} --partition {partition}`" if partition else f"`{command}`"


def says_what_to_materialize(
    fn: Callable[Concatenate[C, PipelineResource, P], R],
) -> Callable[Concatenate[C, PipelineResource, P], R]:
    """Wrap a step body (context, then the pipeline resource): a missing upstream output's error gains the command
    that makes it."""

    @functools.wraps(fn)
    def body(context: C, pipeline: PipelineResource, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(context, pipeline, *args, **kwargs)
        except MissingUpstreamError as missing:
            if missing.asset is not None and not missing.advice:
                command = materialize_command(missing.asset, missing.key or "", Partitions.of(pipeline.config))
                missing.advice = f" The command: {command}"
            raise

    return body
