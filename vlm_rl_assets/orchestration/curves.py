"""Training curves and pass@k as small PNGs (drawn by charts.py) inline in an asset's markdown metadata."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import polars as pl

from vlm_rl_assets.charts import line_panels_png

Panel = tuple[str, tuple[str, ...]]  # title, logged columns drawn in it (each its own colour, named in the legend)
PANELS = (  # DPO's
    ("loss", ("loss",)),
    ("rewards/accuracies", ("rewards/accuracies",)),
    ("rewards/margins", ("rewards/margins",)),
    ("logps: chosen, rejected", ("logps/chosen", "logps/rejected")),
)
GRPO_PANELS = (
    ("loss", ("loss",)),
    ("reward, reward std", ("reward", "reward_std")),
    ("kl", ("kl",)),
    ("completion length (tokens)", ("completions/mean_length",)),
)
PANEL_W, PANEL_H = 240, 130


def curves_png(curve: pl.DataFrame, panels: Sequence[Panel] = PANELS) -> bytes:
    """A 2x2 grid of line plots of the logged metrics against `step` (DPO's panels unless given) under a legend of
    the metrics; panels whose columns are missing stay blank."""
    drawn = [
        (title, {c: curve.select("step", c).drop_nulls().rows() for c in columns if c in curve.columns})
        for title, columns in panels
    ]
    return line_panels_png(drawn, columns=2, panel_size=(PANEL_W, PANEL_H))


def curves_markdown(curve: pl.DataFrame, panels: Sequence[Panel] = PANELS) -> str:
    """The PNG inline as a data URI: metadata travels with the run, no file to host."""
    return _inline("training curves", curves_png(curve, panels))


def pass_at_k_markdown(curves: dict[str, list[float]]) -> str:
    """pass@k against k (1..N), one line per model, as an inline PNG: base vs. candidate at a glance, and whether
    sampling more closes the gap."""
    series = {name: list(enumerate(values, 1)) for name, values in curves.items()}
    png = line_panels_png(
        [("pass@k vs k", series)], columns=1, y_range=(0.0, 1.0), panel_size=(2 * PANEL_W, PANEL_H + 20)
    )
    return _inline("pass@k curves", png)


def _inline(alt: str, png: bytes) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
