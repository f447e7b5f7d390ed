"""How a number reads where people look (asset metadata and its markdown tables, log lines, review pages): rounded
to what it means. Only what is shown; the stored tables keep the raw values.

- a share (accuracy, score, fraction in [0, 1]) and any float without a unit of its own: 3 decimals, `0.622`; a
  smaller one keeps 2 significant digits (a KL of 0.00012 is not 0.0), unless it is float error (3e-19 is 0.0)
- an accuracy delta (a difference of shares): points, signed, one decimal, `+2.0 points [+0.2, +3.8]`
- seconds as a number: one decimal; in text `42.5 s`, `12.3 min`, `3.42 h`; counts `4.03 k`; memory `1.23 GiB`
"""

from __future__ import annotations

import math
import numbers

import polars as pl

DECIMALS = 3  # a share, and any float without a unit of its own
SECONDS_DECIMALS = 1
FLOAT_ERROR = 1e-9  # below this a value is float error (a difference of equal means: 3e-19), shown as 0


def rounded(value: object, decimals: int = DECIMALS) -> object:
    """A float (numpy's too) to `decimals` decimals, -0.0 as 0.0; one below the last decimal but above float error to 2
    significant digits. Anything else (int, bool, None, NaN, a string) as it is."""
    if isinstance(value, bool | int) or not isinstance(value, numbers.Real):
        return value
    value = float(value)
    if not math.isfinite(value):
        return value
    if FLOAT_ERROR <= abs(value) < 10**-decimals:
        return float(f"{value:.2g}")
    return round(value, decimals) + 0.0


def seconds_value(value: float) -> float:
    """Seconds as a metadata number: 12.3."""
    return rounded(value, SECONDS_DECIMALS)


def readable_values(value: object) -> object:
    """Every float inside `value` (a number, or dicts and lists of them, as JSON metadata holds) `rounded`."""
    if isinstance(value, dict):
        return {k: readable_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable_values(v) for v in value]
    return rounded(value)


def number(value: object, decimals: int = DECIMALS) -> str:
    """A table cell: a float with exactly `decimals` decimals (0.600 beside 0.622), a nonzero one below the last decimal
    with 2 significant digits (5e-07); anything else as `str` gives it."""
    if isinstance(value, bool | int) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isfinite(value) and FLOAT_ERROR <= abs(value) < 10**-decimals:
        return f"{value:.2g}"
    return f"{round(value, decimals) + 0.0:.{decimals}f}" if math.isfinite(value) else str(value)


def points(fraction: float | None) -> str:
    """An accuracy delta (a fraction) in points, signed, one decimal: `+2.0`; None is `-`."""
    return "-" if fraction is None else f"{100 * fraction:+.1f}"


def delta_points(delta: float | None, low: float | None, high: float | None, unit: str = "points") -> str:
    """A delta and its CI in points: `+2.0 points [+0.2, +3.8]` (`+2.0 [+0.2, +3.8]` with unit ""); no delta is `-`."""
    if delta is None:
        return "-"
    return f"{points(delta)}{' ' + unit if unit else ''} [{points(low)}, {points(high)}]"


def deltas_in_points(deltas: pl.DataFrame, column: str = "delta (points, 95% CI)") -> pl.DataFrame:
    """A table with `delta`, `ci_low`, `ci_high` (fractions) as it reads: those three as one `+2.0 [+0.2, +3.8]`
    column, where `delta` was."""
    cells = pl.struct("delta", "ci_low", "ci_high").map_elements(
        lambda row: delta_points(row["delta"], row["ci_low"], row["ci_high"], unit=""), return_dtype=pl.String
    )
    shown = [cells.alias(column) if name == "delta" else pl.col(name) for name in deltas.columns]
    return deltas.select(shown).drop("ci_low", "ci_high")


def with_ci(value: float | None, low: float | None, high: float | None) -> str:
    """A share and its CI: `0.622 [0.571, 0.670]`; without a CI (pass@k) the share alone."""
    if low is None or high is None:
        return number(value)
    return f"{number(value)} [{number(low)}, {number(high)}]"


def scores_as_read(table: pl.DataFrame, models: list[str]) -> pl.DataFrame:
    """`evaluation.benchmarks.compare`'s table (or some of its columns) as it reads: each model's value with its CI in
    one column (`0.622 [0.571, 0.670]`), and `delta` (a fraction) as `delta (points)`, `+2.0`."""
    shown = []
    for name in table.columns:
        if name in models and f"{name}_ci_low" in table.columns:
            fields = pl.struct(v=pl.col(name), low=pl.col(f"{name}_ci_low"), high=pl.col(f"{name}_ci_high"))
            cells = fields.map_elements(lambda r: with_ci(r["v"], r["low"], r["high"]), return_dtype=pl.String)
            shown.append(cells.alias(name))
        elif name == "delta":
            shown.append(pl.col(name).map_elements(points, return_dtype=pl.String).alias("delta (points)"))
        elif not any(name == f"{m}_ci_{end}" for m in models for end in ("low", "high")):
            shown.append(pl.col(name))
    return table.select(shown)


def seconds(value: float) -> str:
    """`42.5 s`, `12.3 min`, `3.42 h`."""
    if value < 60:
        return f"{value:.3g} s"
    return f"{value / 60:.3g} min" if value < 3600 else f"{value / 3600:.3g} h"


def quantity(value: float, unit: str = "") -> str:
    """`980`, `4.03 k`, `1.23 M`; with a unit `980 B`, `3.68 MB`."""
    for divisor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= divisor:
            return f"{value / divisor:.3g} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def mebibytes(value: float) -> str:
    """`820 MiB`, `1.23 GiB`."""
    return f"{value / 1024:.3g} GiB" if value >= 1024 else f"{value:.3g} MiB"
