"""What the Dagster UI shows: markdown tables and progress lines for long stages."""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
import polars as pl


def markdown_table(df: pl.DataFrame, max_rows: int = 10) -> dg.MetadataValue:
    shown = df.head(max_rows)
    cells = [[str(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in shown.iter_rows()]
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if df.height > max_rows:
        lines.append(f"\n… {df.height - max_rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def progress_logger(context: dg.AssetExecutionContext, stage: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback logging done/total, rate and ETA about every 10%."""
    start = time.monotonic()
    last_logged = [-1]

    def report(done: int, total: int) -> None:
        decile = done * 10 // max(total, 1)
        if decile == last_logged[0] and done < total:
            return
        last_logged[0] = decile
        elapsed = time.monotonic() - start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        context.log.info(f"{stage}: {done}/{total} ({rate:.3g}/s, ETA {eta:.0f}s)")

    return report
