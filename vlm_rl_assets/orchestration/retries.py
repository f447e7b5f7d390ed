"""Retries for transient failures only: a dropped connection or timeout (S3, a remote judge, a node) is retried with
exponential backoff, while config errors, missing upstreams and bad data fail at once instead of after minutes.
(A `RetryPolicy` would retry every exception, so those would wait out its backoff before failing.)"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import botocore.exceptions
import dagster as dg
import httpx

GPU_POOL = (
    "gpu"  # concurrency pool of the assets that hold a GPU; its limit is set on the instance (docker/dagster.yaml)
)
MAX_RETRIES = 2
FIRST_DELAY_S = 30
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    httpx.TransportError,
    botocore.exceptions.ConnectionError,
)

P = ParamSpec("P")
R = TypeVar("R")


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap an asset body (context first): a transient error asks Dagster for a retry after 30 s, then 60 s."""

    @functools.wraps(fn)
    def body(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TRANSIENT_ERRORS as error:
            context = args[0] if args else kwargs["context"]
            wait = FIRST_DELAY_S * 2**context.retry_number  # type: ignore[attr-defined]
            raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from error

    return body
