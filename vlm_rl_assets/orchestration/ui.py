"""What the Dagster UI shows: metadata and markdown tables with their numbers rounded (`readable.py`) and progress
lines for long stages."""

from __future__ import annotations

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.readable import number, readable_values, rounded, seconds_value


def readable_metadata(metadata: dict) -> dict:
    """`metadata` as people read it: every float (in dicts and lists too, and `MetadataValue.float`s) rounded by
    `readable.rounded`; markdown, paths and the rest as they are."""
    return {key: _readable(value) for key, value in metadata.items()}


def _readable(value: object) -> object:
    if isinstance(value, dg.FloatMetadataValue):
        return dg.MetadataValue.float(rounded(value.value))
    return value if isinstance(value, dg.MetadataValue) else readable_values(value)


def markdown_table(df: pl.DataFrame, max_rows: int = 10, max_chars: int | None = None) -> dg.MetadataValue:
    """The first `max_rows` rows, each cell on one line and cut to `max_chars` characters (with …) when given, floats
    with 3 decimals (`readable.number`)."""
    shown = df.head(max_rows)
    cells = [[_cell(v, max_chars) for v in row] for row in shown.iter_rows()]
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if df.height > max_rows:
        lines.append(f"\n… {df.height - max_rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object, max_chars: int | None) -> str:
    text = number(value).replace("\n", " ")
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text.replace("|", "\\|")


class Progress:
    """A `progress(done, total)` callback logging done/total, rate and ETA about every 10%, whose totals become
    metadata, so a slow stage shows how far it is in the run's logs and how fast it was on the asset."""

    def __init__(self, context: dg.AssetExecutionContext, label: str) -> None:
        self.context, self.label = context, label
        self.start = time.monotonic()
        self.done, self.elapsed, self.last_decile = 0, 0.0, -1

    def __call__(self, done: int, total: int) -> None:
        self.done, self.elapsed = done, time.monotonic() - self.start
        decile = done * 10 // max(total, 1)
        if decile == self.last_decile and done < total:
            return
        self.last_decile = decile
        rate = self.rate()
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.context.log.info(f"{self.label}: {done}/{total} ({rate:.3g}/s, ETA {eta:.0f}s)")

    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def metadata(self, name: str) -> dict[str, float]:
        """`<name>/done`, `<name>/seconds` and `<name>/per_second` as of the last report."""
        seconds, rate = seconds_value(self.elapsed), rounded(self.rate())
        return {f"{name}/done": self.done, f"{name}/seconds": seconds, f"{name}/per_second": rate}
