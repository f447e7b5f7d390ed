"""The training-curves PNG: a decodable image embedded in markdown, tolerant of missing metrics."""

from __future__ import annotations

import base64
import io

import polars as pl
from PIL import Image

from vlm_rl_assets.assets.curves import PANEL_H, PANEL_W, curves_markdown, curves_png


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
    assert Image.open(io.BytesIO(png)).size == (2 * PANEL_W, 2 * PANEL_H)
    assert len(png) < 20_000

    markdown = curves_markdown(curve)
    prefix = "![training curves](data:image/png;base64,"
    assert markdown.startswith(prefix) and base64.b64decode(markdown[len(prefix) : -1]) == png


def test_one_logged_step_still_draws() -> None:
    Image.open(io.BytesIO(curves_png(pl.DataFrame({"step": [1], "loss": [0.69]})))).verify()
