"""A category's chance level and whether a base's dev accuracy is within noise of it (`evaluation/chance.py`), and the
stored verdict prompt_mixture and rollouts refuse on."""

from __future__ import annotations

import math

import polars as pl
import pytest

from vlm_rl_assets.evaluation import chance
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore

ITEMS = {"category": pl.String, "answer": pl.String, "answer_type": pl.String, "choices": pl.List(pl.String)}


def items(answers: list[str], answer_type: str, choices: list[list[str]] | None = None, category: str = "c"):
    rows = [
        {"category": category, "answer": a, "answer_type": answer_type, "choices": (choices or [[]] * len(answers))[i]}
        for i, a in enumerate(answers)
    ]
    return pl.DataFrame(rows, schema=ITEMS)


def test_choice_chance_is_one_over_the_choices_averaged_over_items():
    level = chance.chance_level(items(["A", "B", "C"], "choice", [["x", "y"], list("wxyz"), list("wxyz")]))
    assert level == (pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3), "a uniform guess among the choices")


def test_choice_chance_is_the_majority_letter_when_that_scores_more():
    level = chance.chance_level(items(["A", "A", "A", "B"], "choice", [list("wxyz")] * 4))
    assert level == (0.75, "always the most common answer")


def test_number_chance_is_the_majority_answers_share_numbers_by_value():
    assert chance.chance_level(items(["3", "3.0", "4", "5"], "number")) == (0.5, "always the most common answer")


def test_text_chance_ignores_case_and_spacing():
    level, _ = chance.chance_level(items(["Dark red", "dark  red", "blue"], "text"))
    assert level == pytest.approx(2 / 3)


def test_open_answers_and_no_items_have_no_chance_level():
    assert chance.chance_level(items(["a red circle"], "open")) is None
    assert chance.chance_level(items([], "number")) is None


def test_noise_margin_is_one_and_a_half_binomial_standard_errors_at_least_five_points():
    assert chance.noise_margin(0.1, 30) == pytest.approx(1.5 * math.sqrt(0.1 * 0.9 / 30))  # 0.082
    assert chance.noise_margin(0.5, 10_000) == 0.05
    assert chance.noise_margin(1.0, 50) == 0.05


def test_chance_floors_are_chance_plus_the_noise_margin_per_category():
    digits = items([str(i % 10) for i in range(30)], "number", category="digits")
    scene = items(["a red circle"] * 5, "open", category="scene")
    floors = chance.chance_floors(pl.concat([digits, scene]))
    assert floors == {"digits": pytest.approx(0.1 + chance.noise_margin(0.1, 30))}  # open answers: no floor


def test_verdicts_name_a_category_at_chance_and_what_to_do():
    digits = items([str(i % 10) for i in range(30)], "number", category="digits")  # chance 0.1, margin 0.08
    color = items(["red"] * 10 + [f"c{i}" for i in range(20)], "text", category="color")  # chance 0.33, margin 0.13
    verdicts = chance.chance_verdicts(
        pl.concat([digits, color]),
        {"digits": 0.15, "color": 0.6},
        ["digits", "color", "scans"],
        "embedded",
        {"digits": 120, "color": 120},
        {"color"},
        300,
    )
    by = {row["category"]: row for row in verdicts.iter_rows(named=True)}
    assert {c: row["verdict"] for c, row in by.items()} == {
        "digits": chance.AT_CHANCE,
        "color": chance.ABOVE_CHANCE,
        "scans": chance.UNCHECKED,
    }
    assert by["digits"]["n"] == 30 and by["digits"]["chance"] == pytest.approx(0.1)
    message = by["digits"]["message"]
    assert message.startswith(
        "category 'digits' is at chance on the base model: dev accuracy 0.15 on 30 items vs. chance 0.10"
    )
    for advice in (
        "more bootstrap rows and steps (it had 120 of 240 SFT rows (50%) for 300 steps;",
        "categories.digits.bootstrap_fraction",
        "bootstrap.max_steps",
        "56x56",
        "model.path",
        "categories.digits.allow_chance_base: true",
    ):
        assert advice in message
    assert by["color"]["message"] is None
    # just above the margin is above chance
    above = chance.chance_verdicts(
        digits, {"digits": 0.1 + chance.noise_margin(0.1, 30)}, ["digits"], "embedded", {}, ()
    )
    assert above["verdict"].to_list() == [chance.ABOVE_CHANCE]


def test_a_synthetic_category_at_chance_is_told_to_train_longer_or_on_more_examples():
    verdicts = chance.chance_verdicts(
        items(["red", "blue"] * 20, "text"), {"c": 0.5}, ["c"], "embedded", {"c": 120}, {"c"}
    )
    assert "bootstrap.examples_override.c" in verdicts["message"][0] and "bootstrap.max_steps" in verdicts["message"][0]


def test_refusal_reads_the_stored_verdict_for_this_model_only(tmp_path):
    store = LocalStore(tmp_path)
    assert chance.refusal(store, "digits", "embedded", "rollouts") is None  # base_model not run yet
    digits = items([str(i % 10) for i in range(30)], "number", category="digits")
    chance.write_verdicts(
        store, chance.chance_verdicts(digits, {"digits": 0.1}, ["digits"], "embedded", {"digits": 9}, ())
    )
    why = chance.refusal(store, "digits", "embedded", "rollouts")
    assert why.startswith("rollouts[digits] refused: category 'digits' is at chance")
    assert chance.refusal(store, "color", "embedded", "rollouts") is None
    assert chance.refusal(store, "digits", "/models/mine", "rollouts") is None  # a verdict about another base
    chance.write_verdicts(store, chance.unchecked(["digits"], "/models/mine"))  # a configured model: no dev check
    assert chance.refusal(store, "digits", "/models/mine", "rollouts") is None
    assert store.read_table(*chance.TABLE, schemas.BASE_MODEL_CHANCE)["verdict"].to_list() == [chance.UNCHECKED]
