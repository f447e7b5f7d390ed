"""An asset's body as every asset runs it: transient failures retried (`retries.py`), its cost metered and its
metadata made readable (`metered.py`), a missing upstream output named with the command that makes it
(`upstream.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec

import dagster as dg

from vlm_rl_assets.orchestration.metered import metered
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import retry_transient
from vlm_rl_assets.orchestration.upstream import says_what_to_materialize

P = ParamSpec("P")
Body = Callable[Concatenate[dg.AssetExecutionContext, PipelineResource, P], dg.MaterializeResult]


def asset_step(fn: Body) -> Body:
    """Wrap an asset body (context, then the pipeline resource)."""
    return retry_transient(metered(says_what_to_materialize(fn)))
