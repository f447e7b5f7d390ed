"""The costs table: what each materialization spent (`metering.Usage`), a row per run under `costs/<asset>/<category>`,
so the cost of a result is read from the store, inside Dagster or outside it.

One object per asset and category: the categories' runs, which may run at once, never write the same object.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import polars as pl

from vlm_rl_assets.metering import STALE_TEMP_SWEPT, Usage
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

TABLE = "costs"
ALL = "all"  # the category of an unpartitioned asset
ADDED = {STALE_TEMP_SWEPT: 0}  # counts added since the first costs tables were written: their old rows' value


def record_cost(store: Store, asset: str, category: str, usage: Usage, run_id: str, pipeline_round: int = 1) -> str:
    """Append one row to `costs/<asset>/<category>`; returns the table's URI."""
    key = f"{asset}/{category}"
    row = {"asset": asset, "category": category, "round": pipeline_round, "run_id": run_id}
    row |= {"recorded_at": datetime.now(UTC), **dataclasses.asdict(usage)}
    rows = pl.DataFrame([row], schema=schemas.COSTS)
    if store.has_table(TABLE, key):
        rows = pl.concat([store.read_table(TABLE, key, schemas.COSTS, ADDED), rows])
    return store.write_table(TABLE, key, rows, schemas.COSTS)


def latest_costs(store: Store) -> pl.DataFrame:
    """The latest row of every asset, category and round recorded under this store's root, oldest first."""
    keys = store.table_keys(TABLE)
    if not keys:
        return schemas.empty(schemas.COSTS)
    rows = pl.concat([store.read_table(TABLE, key, schemas.COSTS, ADDED) for key in keys])
    latest = rows.sort("recorded_at").group_by("asset", "category", "round", maintain_order=True).last()
    return latest.select(list(schemas.COSTS)).sort("recorded_at")
