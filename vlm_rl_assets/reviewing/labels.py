"""Human labels of sampled rollouts, `labels/<category>` in the store (schemas.HUMAN_LABELS): one row per item
(prompt_id, sample_idx). Labelling an item again replaces its row, the last label winning, and `replaced` counts
the labels it replaced. A labels file that cannot be read stops the save: it is never written over, so a file
edited by hand into garbage loses nothing already saved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from vlm_rl_assets.judging.calibration import LABELS
from vlm_rl_assets.names import ROLLOUTS
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

LABELS_ASSET = "labels"
KEY = ["prompt_id", "sample_idx"]


class LabelsFileError(ValueError):
    """The labels file exists but cannot be used; the message names it and the fix."""


def read_human_labels(store: Store, category: str) -> pl.DataFrame:
    """The category's labels, empty when none were saved; the latest label of an item when a hand edit left two."""
    if not store.has_table(LABELS_ASSET, category):
        return schemas.empty(schemas.HUMAN_LABELS)
    uri = store.table_uri(LABELS_ASSET, category)
    try:
        table = store.read_table(LABELS_ASSET, category, schemas.HUMAN_LABELS)
    except (schemas.SchemaError, pl.exceptions.PolarsError, OSError) as err:
        raise LabelsFileError(
            f"labels file {uri} cannot be read ({type(err).__name__}: {err}); nothing has been written over it. "
            f"Restore it from a copy, or move it aside (e.g. to {uri}.broken) to start a new file"
        ) from err
    blanks = [c for c in ("prompt_id", "sample_idx", "label") if table[c].null_count()]
    if blanks:
        raise LabelsFileError(
            f"labels file {uri} has rows without {blanks}; nothing has been written over it. Delete or complete those "
            "rows (every row needs prompt_id, sample_idx and label), or move the file aside to start a new one"
        )
    return table.sort("labelled_at", nulls_last=False).unique(KEY, keep="last", maintain_order=True)


def save_label(store: Store, category: str, item: dict, label: bool, who: str, now: datetime | None = None) -> dict:
    """Save a person's label of `item` (a filtered_rollouts row: prompt_id, sample_idx, response, correct), replacing
    an earlier label of the same item; returns the saved row. Not safe against concurrent writers: the server
    serializes saves."""
    labels = read_human_labels(store, category)  # raises on an unreadable file before anything is written
    same = (pl.col("prompt_id") == item["prompt_id"]) & (pl.col("sample_idx") == item["sample_idx"])
    earlier = labels.filter(same)
    row = {
        "prompt_id": item["prompt_id"],
        "sample_idx": item["sample_idx"],
        "response": item["response"],
        "verdict": item["correct"],
        "label": label,
        "who": who,
        "labelled_at": now or datetime.now(UTC),
        "replaced": int(earlier["replaced"][0]) + 1 if earlier.height else 0,
    }
    updated = pl.concat([labels.filter(~same), pl.DataFrame([row], schema=schemas.HUMAN_LABELS)])
    store.write_table(LABELS_ASSET, category, updated, schemas.HUMAN_LABELS)
    return row


def current_labels(labels: pl.DataFrame, rollouts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(labels of rollouts that still exist with the text that was labelled, as judging.calibration.LABELS rows;
    the stale rest, whose item is gone or now says something else: rollouts were regenerated since)."""
    current = rollouts.select(*KEY, current="response")
    joined = labels.join(current, on=KEY, how="left")
    fresh = pl.col("current").is_not_null() & (pl.col("current") == pl.col("response"))
    return joined.filter(fresh).select(list(LABELS)), joined.filter(~fresh).select(*KEY, "response")


@dataclass(frozen=True)
class HumanLabels:
    """What `calibration_labels: human` checks the judge against: the labels of current rollouts, the stale ones left
    out (their rollout is gone or says something else now), and how many items were labelled again."""

    labels: pl.DataFrame  # judging.calibration.LABELS rows
    stale: pl.DataFrame
    replaced: int  # an item labelled again: the last label counts


def human_labels(store: Store, category: str) -> HumanLabels:
    saved = read_human_labels(store, category)
    labels, stale = current_labels(saved, store.read_table(ROLLOUTS, category, schemas.ROLLOUTS))
    return HumanLabels(labels, stale, int(saved["replaced"].sum()))
