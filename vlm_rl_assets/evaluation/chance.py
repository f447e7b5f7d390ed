"""Whether a base model learned a category at all: its greedy dev accuracy against the category's chance level.

Chance is what a model that never looks at the image scores on the category's dev items: for `number`, `text`,
`structured`, `math` and `ocr` answers always giving the most common answer (its share of the items); for `choice`
that, or guessing an option uniformly (1 / number of choices, averaged over the items), whichever is higher. `open`
answers (scored CHAIR-style, not right or wrong by one answer) have no chance level. A category is at chance when its
dev accuracy is below chance + `noise_margin`: 1.5 binomial standard errors of chance on its n dev items, at least
5 points. DPO sharpens what a base already does; on a category at chance it has nothing to sharpen, so base_model
warns by name and stores its verdicts (`TABLE`), and prompt_mixture and rollouts of such a category refuse to run
until the category's `allow_chance_base` says go.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping

import polars as pl

from vlm_rl_assets.names import BASE_MODEL
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

TABLE = (BASE_MODEL, "chance")  # (asset, key): the verdicts of the base model base_model last built or checked
MIN_MARGIN = 0.05
# 1.5 (one-sided, ~93%): at 2 the bootstrap's stop (which waits for every category to clear chance) held one first run
# 150 steps past the band on shape_choice hovering at 0.40-0.43 against a floor of 0.41 (bench/RESULTS.md, first run)
STANDARD_ERRORS = 1.5
AT_CHANCE, ABOVE_CHANCE, UNCHECKED, NO_CHANCE_LEVEL = "at_chance", "above_chance", "unchecked", "no_chance_level"
NO_CHANCE_TYPES = frozenset({"open"})
# What a 10-class task of real images (scikit-learn's handwritten digits at 56x56) needed on the embedded model to
# reach chance + 10 points on dev (README "How much data", bench/digits_threshold.py)
MEASURED = (
    "10-class handwritten digits at 56x56 reached chance + 10 points beside the default's five categories from 300 "
    "bootstrap rows (4% of the SFT rows) after 900 steps and from 600 (8%) after 600, never from 150 (2%); beside "
    "color alone from 30 (20%) after 600 steps"
)


def answer_key(answer: str, answer_type: str) -> str:
    """The answer as a constant answerer would repeat it: case and spacing ignored, numbers by value."""
    key = " ".join(answer.split()).casefold()
    if answer_type == "number":
        try:
            return f"{float(key.replace(',', '')):g}"
        except ValueError:
            return key
    return key


def chance_level(items: pl.DataFrame) -> tuple[float, str] | None:
    """One category's chance level on `items` (columns `answer`, `answer_type`, `choices`) and how it was found;
    None without items or for `open` answers."""
    if items.is_empty() or NO_CHANCE_TYPES & set(items["answer_type"]):
        return None
    keys = [answer_key(a, t) for a, t in zip(items["answer"], items["answer_type"])]
    majority = max(Counter(keys).values()) / len(keys)
    counts = items["choices"].list.len().fill_null(0).to_list()
    if set(items["answer_type"]) == {"choice"} and all(counts):
        uniform = sum(1 / k for k in counts) / len(counts)
        if uniform >= majority:
            return uniform, "a uniform guess among the choices"
    return majority, "always the most common answer"


def noise_margin(chance: float, n: int) -> float:
    """How far above chance an accuracy on `n` items must be to tell it from chance: `STANDARD_ERRORS` binomial
    standard errors of chance, at least `MIN_MARGIN`."""
    return max(MIN_MARGIN, STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / max(n, 1)))


def chance_floors(dev_items: pl.DataFrame) -> dict[str, float]:
    """Per category of `dev_items` (`category`, `answer`, `answer_type`, `choices`) with a chance level: the dev
    accuracy below which it is at chance (chance + `noise_margin`). What the bootstrap's stop rule reads."""
    floors = {}
    for category in dev_items["category"].unique(maintain_order=True):
        items = dev_items.filter(pl.col("category") == category)
        if (found := chance_level(items)) is not None:
            floors[category] = found[0] + noise_margin(found[0], items.height)
    return floors


def chance_verdicts(
    dev_items: pl.DataFrame,
    dev_accuracy: Mapping[str, float],
    categories: Collection[str],
    model: str,
    sft_rows: Mapping[str, int],
    synthetic: Collection[str],
    steps: int = 0,
) -> pl.DataFrame:
    """Each of `categories`' chance level on its `dev_items` (the items `dev_accuracy` was measured on: `category`,
    `answer`, `answer_type`, `choices`) and its verdict, with the warning for one at chance (`TABLE`'s rows), which
    says how many of the `sft_rows` (per category) it had in `steps` SFT steps. A category without a dev accuracy is
    `unchecked`."""
    rows = []
    for category in categories:
        row = _chance_row(category, model, dev_items.filter(pl.col("category") == category), dev_accuracy.get(category))
        if row["verdict"] == AT_CHANCE:
            learned = sft_rows.get(category, 0), sum(sft_rows.values()), steps
            row["message"] = at_chance_message(row, learned, category in synthetic)
        rows.append(row)
    return pl.DataFrame(rows, schema=schemas.BASE_MODEL_CHANCE)


def _chance_row(category: str, model: str, items: pl.DataFrame, accuracy: float | None) -> dict:
    """One category's `TABLE` row without its message: its chance level on `items`, the margin, the verdict."""
    found = chance_level(items)
    row = {
        "category": category,
        "model": model,
        "n": items.height,
        "chance": None,
        "chance_rule": None,
        "dev_accuracy": accuracy,
        "margin": None,
        "verdict": UNCHECKED,
        "message": None,
    }
    if found is not None:
        chance, rule = found
        row |= {"chance": chance, "chance_rule": rule, "margin": noise_margin(chance, items.height)}
    if accuracy is None:
        pass
    elif found is None:
        row["verdict"] = NO_CHANCE_LEVEL
    elif accuracy < row["chance"] + row["margin"]:
        row["verdict"] = AT_CHANCE
    else:
        row["verdict"] = ABOVE_CHANCE
    return row


def unchecked(categories: Collection[str], model: str) -> pl.DataFrame:
    """`TABLE`'s rows for a model without a dev check (a configured model.path): every category unchecked."""
    return chance_verdicts(pl.DataFrame(schema=schemas.PROMPTS), {}, categories, model, {}, ())


def at_chance_message(row: Mapping, learned: tuple[int, int, int], synthetic: bool) -> str:
    """What base_model warns and prompt_mixture and rollouts refuse with: the category, its dev accuracy against
    chance, what to do, and the override. `learned`: the category's SFT rows, all SFT rows, SFT steps."""
    c, (rows, total, steps) = row["category"], learned
    had = f"it had {rows} of {total} SFT rows ({rows / max(total, 1):.0%}) for {steps} steps"
    more = (
        f"give it more SFT examples (bootstrap.examples_override.{c} or bootstrap.examples_per_category; {had}) or "
        "more steps (bootstrap.max_steps)"
        if synthetic
        else f'give it more bootstrap rows and steps ({had}; {MEASURED}; README "How much data"): more rows in the '
        f"dataset, a higher categories.{c}.bootstrap_fraction, or a higher bootstrap.max_steps; use small images "
        "(56x56 learned digits far better than 112x112)"
    )
    return (
        f"category {c!r} is at chance on the base model: dev accuracy {row['dev_accuracy']:.2f} on {row['n']} items "
        f"vs. chance {row['chance']:.2f} ({row['chance_rule']}), below {row['chance'] + row['margin']:.2f}: chance "
        f"plus {row['margin']:.2f} of noise ({STANDARD_ERRORS} standard errors on {row['n']} items, at least "
        f"{MIN_MARGIN}). DPO "
        f"sharpens what the base can already do and will not lift it. To fix: {more}; or set model.path to an SFT "
        f"model of your own. Until then prompt_mixture[{c}] and rollouts[{c}] refuse to run; set "
        f"categories.{c}.allow_chance_base: true to run them anyway."
    )


def write_verdicts(store: Store, verdicts: pl.DataFrame) -> str:
    return store.write_table(*TABLE, verdicts, schemas.BASE_MODEL_CHANCE)


def refusal(store: Store, category: str, model: str, asset: str) -> str | None:
    """Why `asset` of `category` must not run on `model` (model.path): the base_model verdict for this model says
    the category is at chance. None without a verdict for it (base_model not run yet, a configured model unchecked)."""
    if not store.has_table(*TABLE):
        return None
    verdicts = store.read_table(*TABLE, schemas.BASE_MODEL_CHANCE)
    found = verdicts.filter(
        (pl.col("category") == category) & (pl.col("model") == model) & (pl.col("verdict") == AT_CHANCE)
    )
    return None if found.is_empty() else f"{asset}[{category}] refused: {found['message'][0]}"
