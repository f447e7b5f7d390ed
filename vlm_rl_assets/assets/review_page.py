"""The review page link each category stage puts in its metadata: the page rewritten from the tables through that
stage (reviewing/pages.py), so the UI opens what the stage just produced."""

import dagster as dg

from vlm_rl_assets.reviewing.pages import read_tables, write_page
from vlm_rl_assets.store.base import Store


def review_page(store: Store, category: str, stage: str) -> dg.MetadataValue:
    """Write `category`'s page showing the tables through `stage`; its path for the asset's metadata."""
    return dg.MetadataValue.path(write_page(store, read_tables(store, category, stage)))
