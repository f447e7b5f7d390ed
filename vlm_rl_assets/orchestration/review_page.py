"""The review page link each category stage puts in its metadata: the page rewritten from the tables through that
stage (reviewing/pages.py), so the UI opens what the stage just produced."""

import dagster as dg

from vlm_rl_assets.orchestration.partitions import Slice
from vlm_rl_assets.reviewing.pages import read_tables, write_page
from vlm_rl_assets.store.base import Store


def review_page(store: Store, part: Slice, upto: str) -> dg.MetadataValue:
    """Write the page of the run's category (in its round) showing the tables through `upto`; its path for the
    asset's metadata."""
    key = part.key() if part.pipeline_round > 1 else ""
    return dg.MetadataValue.path(write_page(store, read_tables(store, part.category, upto, key)))
