"""How numbers read where people look (`readable.py`, `orchestration/ui.py`): accuracies to 3 decimals, deltas in signed
points, seconds to 0.1, markdown tables' floats rounded, while the values themselves stay as they are."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import polars as pl

from vlm_rl_assets.orchestration.ui import markdown_table, readable_metadata
from vlm_rl_assets.readable import (
    delta_points,
    deltas_in_points,
    number,
    points,
    readable_values,
    rounded,
    scores_as_read,
    seconds_value,
    with_ci,
)


def test_a_float_reads_to_three_decimals_and_a_tiny_one_keeps_two_significant_digits():
    assert rounded(0.6220000000000001) == 0.622
    assert rounded(0.019999999999999997) == 0.02
    assert rounded(0.0019750000000000006) == 0.002
    assert rounded(np.float64(0.1 + 0.2)) == 0.3 and type(rounded(np.float32(0.5))) is float
    assert rounded(0.00012345) == 0.00012 and rounded(-5e-07) == -5e-07  # not 0.0: a KL, a learning rate
    assert rounded(3.3e-19) == 0.0 and number(-3.3e-19) == "0.000"  # float error: a difference of equal means
    assert math.copysign(1, rounded(-0.0)) == 1.0  # no "-0.0"
    assert rounded(12.3456, 1) == 12.3 and seconds_value(12.3456) == 12.3
    for kept in (3, True, None, "0.6220000000000001", float("inf")):
        assert rounded(kept) == kept and type(rounded(kept)) is type(kept)
    assert math.isnan(rounded(float("nan")))


def test_deltas_read_in_signed_points_with_one_decimal():
    assert points(0.019999999999999997) == "+2.0" and points(-0.005) == "-0.5" and points(None) == "-"
    assert delta_points(0.019999999999999997, 0.0019750000000000006, 0.038) == "+2.0 points [+0.2, +3.8]"
    assert delta_points(-0.0125, -0.05, 0.025, unit="") == "-1.2 [-5.0, +2.5]"
    assert delta_points(None, 0.1, 0.2) == "-"


def test_table_cells_have_a_fixed_number_of_decimals():
    assert number(0.6) == "0.600" and number(0.6220000000000001) == "0.622" and number(-45.123456) == "-45.123"
    assert number(5e-07) == "5e-07" and number(0.0) == "0.000" and number(-0.0) == "0.000"
    assert number(7) == "7" and number("pass@1") == "pass@1" and number(None) == "None" and number(True) == "True"
    assert with_ci(0.6220000000000001, 0.5710000000000001, 0.67) == "0.622 [0.571, 0.670]"
    assert with_ci(0.5, None, None) == "0.500"


def test_nested_metadata_values_are_rounded_and_the_rest_kept():
    raw = {"accuracy": {"color": 0.6220000000000001, "count": 1}, "ci": [0.0019750000000000006, 0.038], "n": 8}
    assert readable_values(raw) == {"accuracy": {"color": 0.622, "count": 1}, "ci": [0.002, 0.038], "n": 8}
    shown = readable_metadata(
        {
            "delta": 0.019999999999999997,
            "float": dg.MetadataValue.float(0.30000000000000004),
            "md": dg.MetadataValue.md("0.30000000000000004 in text is the author's"),
            "name": "policy",
        }
    )
    assert shown["delta"] == 0.02 and shown["float"] == dg.MetadataValue.float(0.3)
    assert shown["md"].value.startswith("0.30000000000000004") and shown["name"] == "policy"


def test_tables_are_rounded_when_shown_and_keep_their_raw_values():
    deltas = pl.DataFrame(
        {
            "category": ["color", "overall"],
            "delta": [0.019999999999999997, 0.0],
            "ci_low": [0.0019750000000000006, -0.0125],
            "ci_high": [0.038, 0.0125],
            "n": [8, 16],
        }
    )
    raw = deltas.clone()
    assert markdown_table(deltas).value.splitlines()[2] == "| color | 0.020 | 0.002 | 0.038 | 8 |"
    shown = deltas_in_points(deltas)
    assert shown.columns == ["category", "delta (points, 95% CI)", "n"]
    assert shown.rows() == [("color", "+2.0 [+0.2, +3.8]", 8), ("overall", "+0.0 [-1.2, +1.2]", 16)]
    assert deltas.equals(raw)  # what is stored is not touched


def test_a_comparison_reads_as_values_with_cis_and_a_delta_in_points():
    table = pl.DataFrame(
        {
            "category": ["color", "color"],
            "metric": ["accuracy", "pass@1"],
            "base": [0.6, 0.5],
            "base_ci_low": [0.5, None],
            "base_ci_high": [0.7, None],
            "dpo": [0.6220000000000001, 0.55],
            "dpo_ci_low": [0.5710000000000001, None],
            "dpo_ci_high": [0.67, None],
            "delta": [0.022000000000000075, 0.050000000000000044],
        }
    )
    shown = scores_as_read(table, ["base", "dpo"])
    assert shown.columns == ["category", "metric", "base", "dpo", "delta (points)"]
    assert shown.row(0) == ("color", "accuracy", "0.600 [0.500, 0.700]", "0.622 [0.571, 0.670]", "+2.2")
    assert shown.row(1) == ("color", "pass@1", "0.500", "0.550", "+5.0")
    pass_at_k = scores_as_read(table.select("metric", "base", "dpo", "delta"), ["base", "dpo"])  # no CI columns
    assert markdown_table(pass_at_k).value.splitlines()[2] == "| accuracy | 0.600 | 0.622 | +2.2 |"
