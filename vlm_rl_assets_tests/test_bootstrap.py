"""The embedded base model's SFT data."""

import polars as pl
import pytest
from pydantic import ValidationError

from vlm_rl_assets.bootstrap.embedded import DatasetRows, dev_check_items, synthetic_split
from vlm_rl_assets.bootstrap.settings import BootstrapSettings
from vlm_rl_assets.config import load_config
from vlm_rl_assets.prompts.prompt_table import COT_INSTRUCTIONS
from vlm_rl_assets_tests.helpers import prompt_table


def test_a_share_of_chain_of_thought_items_is_asked_plainly_with_the_short_answer():
    config = load_config()
    table, _, references = synthetic_split(
        config.synthetic_categories(), "sft", {"count": 400, "color": 50}, 0, short_answer_share=0.25
    )
    count = table.with_row_index().filter(table["category"] == "count")
    plain = [i for i, text in zip(count["index"], count["prompt_text"]) if COT_INSTRUCTIONS["number"] not in text]
    assert 60 <= len(plain) <= 140  # ~25% of 400
    assert all(references[i] == table["answer"][i] for i in plain)  # "2", not "I count ... Answer: 2"
    cot = set(count["index"]) - set(plain)
    assert all(references[i].endswith(f"Answer: {table['answer'][i]}") for i in cot)
    colour = table.filter(table["category"] == "color")
    assert colour["prompt_text"].to_list() == ["What colour is the shape?"] * 50  # plain categories unchanged
    again, _, _ = synthetic_split(
        config.synthetic_categories(), "sft", {"count": 400, "color": 50}, 0, short_answer_share=0.25
    )
    assert again.equals(table)  # deterministic
    none, _, _ = synthetic_split(config.synthetic_categories(), "sft", {"count": 400}, 0, short_answer_share=0.0)
    assert none["prompt_text"].str.contains("Think step by step").all()


def test_a_dataset_category_is_learned_from_its_bootstrap_rows_and_checked_on_its_first_dev_rows():
    """Bootstrap rows become SFT examples; each trained dataset category's first dev rows join the synthetic dev
    items in the early-stop check, and a dataset category without bootstrap rows stays out of it."""
    from PIL import Image

    rows = [
        ("digits", "bootstrap", "3"),
        ("digits", "dev", "1"),
        ("digits", "dev", "2"),
        ("digits", "dev", "4"),
        ("shapes", "dev", "5"),
        ("digits", "bootstrap", "7"),
    ]
    prompts = prompt_table({f"p{i}": ("number", answer) for i, (_, _, answer) in enumerate(rows)})
    prompts = prompts.with_columns(
        category=pl.Series([c for c, _, _ in rows]), split=pl.Series([s for _, s, _ in rows])
    )
    images = [(Image.new("RGB", (56, 56), (i, 0, 0)),) for i in range(len(rows))]
    dataset = DatasetRows(prompts, images)
    learned, learned_images = dataset.split("bootstrap")
    assert learned["prompt_id"].to_list() == ["p0", "p5"] and learned_images == [images[0], images[5]]
    config = load_config()
    settings = config.bootstrap.model_copy(update={"dev_per_category": 2})
    logged = []
    dev, dev_images = dev_check_items(
        {"color": config.synthetic_categories()["color"]}, dataset, {"color", "digits"}, settings, logged.append
    )
    assert dev["category"].to_list() == ["color", "color", "digits", "digits"]
    assert dev["prompt_id"].to_list()[2:] == ["p1", "p2"] and dev_images[2:] == [images[1], images[2]]
    assert logged == [
        "bootstrap: dataset categories ['shapes'] have no bootstrap rows; the base is not trained on them"
    ]


def test_the_dev_checks_tighten_near_the_band_and_stop_inside_it():
    """Far below the band the checks are eval_every apart, within near_band of it eval_every_near: a base that learns
    fast on one host and slowly on another is stopped at the same accuracy, not at the same step."""
    settings = load_config().bootstrap.model_copy(
        update={"eval_every": 200, "eval_every_near": 50, "near_band": 0.15, "min_mean_accuracy": 0.47}
    )
    assert settings.check_grid == 50
    assert settings.next_check(0, None) == 200
    assert settings.next_check(200, 0.25) == 400  # far below: the coarse schedule
    assert settings.next_check(400, 0.38) == 450  # within 0.15 of 0.47: every 50 steps
    assert not settings.stops(0.46, []) and settings.stops(0.47, []) and settings.stops(0.52, [])
    assert not settings.stops(0.60, ["shape_choice"])  # a category at chance keeps it going, past the band too


def test_a_band_whose_ends_are_swapped_is_refused():
    with pytest.raises(ValidationError, match="min_mean_accuracy .* must not exceed max_mean_accuracy"):
        BootstrapSettings(min_mean_accuracy=0.6, max_mean_accuracy=0.5)
