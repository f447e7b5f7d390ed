"""Small PNG charts drawn with Pillow (matplotlib is not a dependency: a ~10 MB install for a few line plots):
line charts in panels sharing one legend, and grouped bars. Plain Python; the training curves in asset metadata
(orchestration/curves.py) and the findings' plots (research/findings.py) are drawn with it."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

Series = dict[str, Sequence[tuple[float, float]]]  # label -> (x, y) points
Panel = tuple[str, Series]  # title, its series
Box = tuple[float, float, float, float]  # left, top, right, bottom of a plot area
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))
PANEL_W, PANEL_H, MARGIN, LEGEND_H = 260, 170, 34, 22
FRAME = (160, 160, 160)


def line_panels_png(
    panels: Sequence[Panel],
    columns: int = 3,
    y_range: tuple[float, float] | None = None,
    *,
    panel_size: tuple[int, int] = (PANEL_W, PANEL_H),
) -> bytes:
    """One line chart per (title, series) panel, `columns` to a row, under a legend: a label keeps its colour in
    every panel. Each panel's y axis spans its own points unless `y_range` is given; a series of one point is a dot,
    a panel without points only its title and frame. The image is `panel_size` times the grid, plus LEGEND_H."""
    width, height = panel_size
    labels = list(dict.fromkeys(label for _, series in panels for label in series))
    colour = _colours(labels)
    rows = -(-len(panels) // columns)
    image, draw = _canvas(min(columns, len(panels)) * width, rows * height + LEGEND_H, labels, colour)
    for i, (title, series) in enumerate(panels):
        left, top = (i % columns) * width, LEGEND_H + (i // columns) * height
        points = [p for values in series.values() for p in values]
        if not points:
            _frame(draw, left, top, title, width, height)
            continue
        xs, ys = [x for x, _ in points], [y for _, y in points]
        x_range, span = (min(xs), max(xs)), y_range or (min(ys), max(ys))
        box = _axes(draw, left, top, title, x_range, span, width, height)
        for label, values in series.items():
            _line(draw, [_scale(x, y, box, x_range, span) for x, y in sorted(values)], colour[label])
    return _png(image)


def grouped_bars_png(title: str, groups: Sequence[str], series: dict[str, Sequence[float]]) -> bytes:
    """One group of bars per entry of `groups`, one bar per series label (`series[label][g]`: its value in group g),
    under a legend; the zero line drawn when in range."""
    labels = list(series)
    colour = _colours(labels)
    width = max(2 * PANEL_W, len(groups) * (len(labels) * 14 + 24) + MARGIN + 10)
    image, draw = _canvas(width, PANEL_H + 40 + LEGEND_H, labels, colour)
    values = [v for vs in series.values() for v in vs]
    low, high = min(0.0, *values), max(0.0, *values)
    box = _axes(draw, 0, LEGEND_H, title, (0, 1), (low, high), width, PANEL_H + 20)
    zero = _scale(0, 0, box, (0, 1), (low, high))[1]
    draw.line((box[0], zero, box[2], zero), fill=(90, 90, 90))
    slot = (box[2] - box[0]) / len(groups)
    bar = min(14.0, (slot - 10) / len(labels))
    for g, group in enumerate(groups):
        x0 = box[0] + g * slot + (slot - bar * len(labels)) / 2
        for b, label in enumerate(labels):
            y = _scale(0, series[label][g], box, (0, 1), (low, high))[1]
            draw.rectangle((x0 + b * bar, min(y, zero), x0 + (b + 1) * bar - 2, max(y, zero)), fill=colour[label])
        draw.text((box[0] + g * slot + 4, box[3] + 4), group[:14], fill="black")
    return _png(image)


def _colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _canvas(width: int, height: int, labels: list[str], colour: dict) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white image with the legend (a swatch and each label) along its top."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x = 6
    for label in labels:
        draw.rectangle((x, 7, x + 10, 15), fill=colour[label])
        draw.text((x + 14, 5), label, fill="black")
        x += 24 + 6 * len(label)
    return image, draw


def _frame(draw: ImageDraw.ImageDraw, left: int, top: int, title: str, width: int, height: int) -> Box:
    """A panel's title and the frame of its plot area, which it returns."""
    box = (left + MARGIN, top + 16, left + width - 10, top + height - 18)
    draw.rectangle(box, outline=FRAME)
    draw.text((left + MARGIN, top + 2), title, fill="black")
    return box


def _axes(
    draw: ImageDraw.ImageDraw,
    left: int,
    top: int,
    title: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = PANEL_W,
    height: int = PANEL_H,
) -> Box:
    """A panel's frame with the ends of its y range, and of its x range unless that is (0, 1) (bars: no x axis)."""
    box = _frame(draw, left, top, title, width, height)
    draw.text((left + 2, box[1] - 4), f"{y_range[1]:.3g}", fill="black")
    draw.text((left + 2, box[3] - 8), f"{y_range[0]:.3g}", fill="black")
    if x_range != (0, 1):
        draw.text((box[0], box[3] + 3), f"{x_range[0]:.3g}", fill="black")
        draw.text((box[2] - 24, box[3] + 3), f"{x_range[1]:.3g}", fill="black")
    return box


def _line(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
    """A series' line; one point (a one-round arm, a one-step run) is a dot."""
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    elif points:
        (x, y), r = points[0], 3
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _scale(
    x: float, y: float, box: Box, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[float, float]:
    x_span, y_span = (x_range[1] - x_range[0]) or 1, (y_range[1] - y_range[0]) or 1
    return (
        box[0] + (x - x_range[0]) / x_span * (box[2] - box[0]),
        box[3] - (y - y_range[0]) / y_span * (box[3] - box[1]),
    )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
