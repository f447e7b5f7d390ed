"""The chart PNGs (charts.py) and the training curves drawn with them: decodable images, embedded in markdown,
tolerant of missing metrics."""

from __future__ import annotations

import base64
import io

import polars as pl
from PIL import Image

from vlm_rl_assets.charts import LEGEND_H, grouped_bars_png, line_panels_png
from vlm_rl_assets.orchestration.curves import PANEL_H, PANEL_W, curves_markdown, curves_png, pass_at_k_markdown


def test_curves_png_is_small_and_decodes() -> None:
    curve = pl.DataFrame(
        {
            "step": [1, 2, 3],
            "loss": [0.69, 0.5, 0.3],
            "logps/chosen": [-3.0, -2.5, -2.0],
            "logps/rejected": [-3.0, -4.0, -5.0],
        }
    )
    png = curves_png(curve)
    assert Image.open(io.BytesIO(png)).size == (2 * PANEL_W, 2 * PANEL_H + LEGEND_H)
    assert len(png) < 20_000

    markdown = curves_markdown(curve)
    prefix = "![training curves](data:image/png;base64,"
    assert markdown.startswith(prefix) and base64.b64decode(markdown[len(prefix) : -1]) == png


def test_one_logged_step_still_draws() -> None:
    Image.open(io.BytesIO(curves_png(pl.DataFrame({"step": [1], "loss": [0.69]})))).verify()


def test_pass_at_k_is_an_inline_png() -> None:
    markdown = pass_at_k_markdown({"base": [0.2, 0.4, 0.5], "policy": [0.5, 0.6, 0.7]})
    prefix = "![pass@k curves](data:image/png;base64,"
    assert markdown.startswith(prefix)
    Image.open(io.BytesIO(base64.b64decode(markdown[len(prefix) : -1]))).verify()


def test_a_label_keeps_its_colour_in_every_panel() -> None:
    """The legend names each label once; a panel without points and a one-point series still draw."""
    panels = [("a", {"x": [(0, 0.0), (1, 1.0)], "y": [(0, 1.0)]}), ("b", {"x": [(0, 0.5), (2, 0.2)]}), ("c", {})]
    image = Image.open(io.BytesIO(line_panels_png(panels, columns=2)))
    assert image.size == (2 * 260, 2 * 170 + LEGEND_H)
    blue, red = (31, 119, 180), (214, 39, 40)
    colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 16)}
    assert blue in colours and red in colours


def test_grouped_bars_decode() -> None:
    png = grouped_bars_png("delta", ["color", "count"], {"dpo": [1.5, -2.0], "grpo": [0.5, 3.0]})
    Image.open(io.BytesIO(png)).verify()
