"""Training curves as a small PNG for an asset's markdown metadata, drawn with Pillow (matplotlib is not a
dependency: a ~10 MB install for four line plots)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import polars as pl
from PIL import Image, ImageDraw

Panel = tuple[str, tuple[str, ...]]  # title, columns drawn in it (each its own colour)
PANELS = (  # DPO's
    ("loss", ("loss",)),
    ("rewards/accuracies", ("rewards/accuracies",)),
    ("rewards/margins", ("rewards/margins",)),
    ("logps: chosen (blue), rejected (red)", ("logps/chosen", "logps/rejected")),
)
GRPO_PANELS = (
    ("loss", ("loss",)),
    ("reward (blue), reward std (red)", ("reward", "reward_std")),
    ("kl", ("kl",)),
    ("completion length (tokens)", ("completions/mean_length",)),
)
COLOURS = ((31, 119, 180), (214, 39, 40))
PANEL_W, PANEL_H, PAD = 240, 130, 18


def curves_png(curve: pl.DataFrame, panels: Sequence[Panel] = PANELS) -> bytes:
    """A 2x2 grid of line plots of the logged metrics against `step` (DPO's panels unless given); panels whose columns
    are missing stay blank."""
    image = Image.new("RGB", (2 * PANEL_W, 2 * PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for i, (title, columns) in enumerate(panels):
        left, top = (i % 2) * PANEL_W, (i // 2) * PANEL_H
        box = (left + PAD + 24, top + PAD, left + PANEL_W - 8, top + PANEL_H - 8)
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((left + PAD + 24, top + 3), title, fill="black")
        present = [c for c in columns if c in curve.columns]
        values = [v for c in present for v in curve[c].drop_nulls().to_list()]
        if not values:
            continue
        low, high = min(values), max(values)
        draw.text((left + 2, box[1]), f"{high:.3g}", fill="black")
        draw.text((left + 2, box[3] - 10), f"{low:.3g}", fill="black")
        for column, colour in zip(present, COLOURS):
            points = curve.select("step", column).drop_nulls()
            draw.line(_scaled(points, box, low, high), fill=colour, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def curves_markdown(curve: pl.DataFrame, panels: Sequence[Panel] = PANELS) -> str:
    """The PNG inline as a data URI: metadata travels with the run, no file to host."""
    return f"![training curves](data:image/png;base64,{base64.b64encode(curves_png(curve, panels)).decode()})"


def _scaled(points: pl.DataFrame, box: tuple[int, int, int, int], low: float, high: float) -> list[tuple[float, float]]:
    steps, values = points[:, 0].to_list(), points[:, 1].to_list()
    first, last = min(steps), max(steps)
    x_span, y_span = (last - first) or 1, (high - low) or 1
    scaled = [
        (box[0] + (s - first) / x_span * (box[2] - box[0]), box[3] - (v - low) / y_span * (box[3] - box[1]))
        for s, v in zip(steps, values)
    ]
    return scaled if len(scaled) > 1 else scaled * 2  # one point still draws (a dot)


def pass_at_k_markdown(curves: dict[str, list[float]]) -> str:
    """pass@k against k (1..N), one line per model (blue, then red), as an inline PNG: base vs. candidate at a
    glance, and whether sampling more closes the gap."""
    image = Image.new("RGB", (2 * PANEL_W, PANEL_H + 20), "white")
    draw = ImageDraw.Draw(image)
    box = (PAD + 24, PAD, 2 * PANEL_W - 8, PANEL_H + 20 - 8)
    draw.rectangle(box, outline=(160, 160, 160))
    names = list(curves)
    legend = ", ".join(f"{name} ({colour})" for name, colour in zip(names, ("blue", "red")))
    draw.text((PAD + 24, 3), f"pass@k vs k: {legend}", fill="black")
    draw.text((2, box[1]), "1", fill="black")
    draw.text((2, box[3] - 10), "0", fill="black")
    for name, colour in zip(names, COLOURS):
        points = pl.DataFrame({"step": range(1, len(curves[name]) + 1), "value": curves[name]})
        draw.line(_scaled(points, box, 0.0, 1.0), fill=colour, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return f"![pass@k curves](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
