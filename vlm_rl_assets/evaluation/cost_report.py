"""What a release cost, per stage and category, and what its gain cost per unit (release_report's cost table).

The input is each asset's latest cost row per category and round (`store/costs.py`'s `latest_costs`). The totals
add every row up, except peak memory and the accelerators held, which are maxima (they are held at once, not spent
one after another). The gain is the overall paired accuracy delta in points, per million generated tokens and per
accelerator-hour, or per CPU-hour where the stages ran on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from vlm_rl_assets.metering import USAGE_FIELDS
from vlm_rl_assets.readable import mebibytes, quantity, seconds

TOTAL = "total"
MAXIMA = ("accelerators", "peak_memory_mib", "peak_accelerator_memory_mib")


PEOPLE_UNITS = {  # column: (its name for people, how they read it)
    "wall_seconds": ("wall", seconds),
    "cpu_seconds": ("cpu", seconds),
    "accelerator_seconds": ("accelerator", seconds),
    "accelerators": ("accelerators", quantity),
    "peak_memory_mib": ("peak_memory", mebibytes),
    "peak_accelerator_memory_mib": ("peak_accelerator_memory", mebibytes),
    "generated_tokens": ("generated_tokens", quantity),
    "trained_tokens": ("trained_tokens", quantity),
    "train_examples": ("train_examples", quantity),
    "store_bytes_written": ("store_written", lambda value: quantity(value, "B")),
}


def cost_table(costs: pl.DataFrame) -> pl.DataFrame:
    """One row per stage, category and round, the stages in the order they first ran, then the `total` row."""
    first_run = costs.group_by("asset").agg(first=pl.col("recorded_at").min())
    rows = (
        costs.join(first_run, on="asset")
        .sort("first", "category", "round")
        .select(pl.col("asset").alias("stage"), "category", "round", *USAGE_FIELDS)
    )
    total = rows.select(
        stage=pl.lit(TOTAL),
        category=pl.lit(""),
        round=pl.lit(None, pl.Int64),
        **{name: pl.col(name).max() if name in MAXIMA else pl.col(name).sum() for name in USAGE_FIELDS},
    )
    return pl.concat([rows, total.cast(rows.schema)])


def for_people(table: pl.DataFrame) -> pl.DataFrame:
    """The cost table as people read it: `3.4 h`, `1.23 M` tokens, `820 MiB`, `3.68 MB` written."""
    shown = {
        label: pl.col(name).map_elements(show, return_dtype=pl.String) for name, (label, show) in PEOPLE_UNITS.items()
    }
    return table.select("stage", "category", pl.col("round").cast(pl.String).fill_null(""), **shown)


@dataclass(frozen=True)
class Gain:
    """The overall delta in accuracy points and what it cost per unit; a rate is None when its cost is zero."""

    points: float
    generated_tokens: int
    hours: float  # accelerator-hours, or CPU-hours when no accelerator was held
    hour: str  # "accelerator-hour" | "CPU-hour": which hours
    per_million_generated_tokens: float | None
    per_hour: float | None

    def summary(self) -> str:
        """`+5.4 points for 1.23 M generated tokens and 48 min of accelerator time: +4.39 per M tokens, +6.75 per
        accelerator-hour` (a small run: `4.02 k generated tokens and 15.2 s of CPU time`)."""
        rates = [
            f"{rate:+.3g} per {unit}"
            for rate, unit in ((self.per_million_generated_tokens, "M tokens"), (self.per_hour, self.hour))
            if rate is not None
        ]
        return (
            f"{self.points:+.1f} points for {quantity(self.generated_tokens)} generated tokens and "
            f"{seconds(self.hours * 3600)} of {self.hour.removesuffix('-hour')} time: "
            + (", ".join(rates) or "no cost recorded")
        )


def gain_per_cost(delta: float, total: dict[str, float]) -> Gain:
    """The gain of an overall accuracy `delta` (a fraction) for the costs of the table's `total` row."""
    points = 100 * delta
    on_accelerator = total["accelerator_seconds"] > 0
    hours = (total["accelerator_seconds"] if on_accelerator else total["cpu_seconds"]) / 3600
    tokens = int(total["generated_tokens"])
    return Gain(
        points=points,
        generated_tokens=tokens,
        hours=hours,
        hour="accelerator-hour" if on_accelerator else "CPU-hour",
        per_million_generated_tokens=points / (tokens / 1e6) if tokens else None,
        per_hour=points / hours if hours > 0 else None,
    )
