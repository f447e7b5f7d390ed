"""The embedded default's base model: a tiny Qwen2-VL built here and SFT-trained to an imperfect level.

DPO needs headroom: the base must answer in the right format and be right only part of the time.
It learns the synthetic categories from their own `sft` seed stream, and a user's dataset category from the
dataset's `bootstrap` rows (their reference responses, templated as prompt_mixture templates its prompts; those rows
are never rolled out), so a dataset category starts above chance and its rollout groups hold right and wrong answers.
SFT stops at the first check on the dev split (the synthetic categories' dev seed stream, a dataset's first dev
rows: the prompts prompt_mixture puts in dev; bench is never read here) whose mean accuracy reaches a band, an
imperfect but teachable base, with no trained category within noise of its chance level (`evaluation/chance.py`): one
that is keeps training going, since DPO cannot lift a category the base has not learned and prompt_mixture would
refuse it. How fast the tiny model learns depends on the host's CPU kernels and the seed (the same step count gave a
dev mean of 0.51 on one host and 0.64 on another), so the checks tighten near the band instead of stopping at a fixed
step; base_model warns when the stop landed above the band.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.bootstrap.settings import BootstrapSettings, SyntheticCategory
from vlm_rl_assets.evaluation.benchmarks import greedy_verdicts
from vlm_rl_assets.evaluation.chance import chance_floors
from vlm_rl_assets.prompts import world
from vlm_rl_assets.prompts.prompt_table import apply_template, reference_response
from vlm_rl_assets.rollouts.engine import HFEngine
from vlm_rl_assets.store import schemas


@dataclass
class BootstrapReport:
    steps: int
    seconds: float
    final_loss: float
    dev_accuracy: dict[str, float]  # per category, at the last check
    checks: list[dict[str, float]] = field(
        default_factory=list
    )  # each check's number, step, mean, per-category accuracy
    sft_rows: dict[str, int] = field(default_factory=dict)  # SFT examples per category
    dev_items: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ITEMS))  # what the checks answered

    @property
    def dev_mean(self) -> float | None:
        """The last check's mean over categories; None without a check."""
        return sum(self.dev_accuracy.values()) / len(self.dev_accuracy) if self.dev_accuracy else None

    def band_verdict(self, settings: BootstrapSettings) -> tuple[str, str | None]:
        """Where the dev mean landed against the bootstrap band (inside, above, below, no dev check), and what to
        do when outside it."""
        mean = self.dev_mean
        if mean is None:
            return "no dev check", None
        low, high = settings.min_mean_accuracy, settings.max_mean_accuracy
        if low <= mean <= high:
            return "inside", None
        if mean > high:
            return "above", (
                f"the base's mean dev accuracy {mean:.3f} is above the bootstrap band [{low}, {high}], so DPO has "
                "less headroom: a category near chance kept training going (see dev_checks and the log), or it "
                f"learned faster between two checks than the band is wide (lower bootstrap.eval_every_near, now "
                f"{settings.eval_every_near})"
            )
        return "below", (
            f"the base's mean dev accuracy {mean:.3f} stayed below the bootstrap band [{low}, {high}] after "
            f"{self.steps} steps (bootstrap.max_steps {settings.max_steps}): raise max_steps, or see which "
            "categories lag in dev_checks"
        )


@dataclass(frozen=True)
class DatasetRows:
    """Dataset categories' rows as prompt_mixture templates them (the prompt table's columns) and their images:
    the `bootstrap` split's are learned (their reference response), the first `dev` ones join the early-stop check."""

    prompts: pl.DataFrame
    images: Sequence[tuple[Image.Image, ...]]

    def split(self, name: str) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]]]:
        rows = [i for i, split in enumerate(self.prompts["split"]) if split == name]
        return self.prompts[rows], [self.images[i] for i in rows]


NO_DATASET = DatasetRows(schemas.empty(schemas.PROMPTS), ())
ITEM_COLUMNS = ("prompt_id", "category", "prompt_text", "answer", "answer_type", "objects", "choices")
ITEMS = {column: schemas.PROMPTS[column] for column in ITEM_COLUMNS}  # what the greedy check reads


def synthetic_split(
    categories: Mapping[str, SyntheticCategory],
    split: str,
    sizes: dict[str, int],
    seed: int,
    short_answer_share: float = 0.0,
) -> tuple[pl.DataFrame, list[tuple], list[str]]:
    """The items of a split of the synthetic categories `sizes` names (with their sizes): a prompt table, their
    images, and reference responses; `short_answer_share` of a chain-of-thought category's items are asked plainly."""
    rows, images, references = [], [], []
    for category, size in sizes.items():
        cat = categories[category]
        plain = random.Random(f"{category}/{split}/short/{seed}")
        for item in world.generate(cat.task, split, size, seed):
            template = "plain" if cat.template == "cot" and plain.random() < short_answer_share else cat.template
            prompt_text = apply_template(template, item.question, item.answer_type)
            rows.append(
                {
                    "prompt_id": f"{split}-{len(rows)}",
                    "category": category,
                    "prompt_text": prompt_text,
                    "answer": item.answer,
                    "answer_type": item.answer_type,
                    "objects": [obj.name for obj in item.objects],
                    "choices": list(item.choices),
                }
            )
            images.append((item.image,))
            references.append(reference_response(template, item.answer, item.answer_type, item.rationale))
    return pl.DataFrame(rows, schema=ITEMS), images, references


def bootstrap_embedded_model(
    out_dir: Path,
    settings: BootstrapSettings,
    categories: Mapping[str, SyntheticCategory],
    batch_size: int,
    max_new_tokens: int,
    log: Callable[[str], None],
    dataset: DatasetRows = NO_DATASET,
) -> BootstrapReport:
    """Build the tiny VLM and SFT it on the synthetic `categories` and `dataset`'s bootstrap rows into `out_dir`,
    checking held-out greedy accuracy every `eval_every` steps with `batch_size` sequences per generate call and
    `max_new_tokens`."""
    # heavy (torch, transformers, TRL): imported when the base model is built, not when the code location loads
    from vlm_rl_assets.bootstrap.sft import TrainExample, sft_train
    from vlm_rl_assets.model.tiny_model import build_tiny_vlm

    synthetic = list(categories)
    sft_sizes = {c: settings.examples_for(c) for c in synthetic}
    train, train_images, references = synthetic_split(
        categories, "sft", sft_sizes, settings.seed, settings.short_answer_share
    )
    learned, learned_images = dataset.split("bootstrap")
    examples = [
        TrainExample(text, imgs, ref)
        for text, imgs, ref in [
            *zip(train["prompt_text"], train_images, references),
            *zip(learned["prompt_text"], learned_images, learned["reference"]),
        ]
    ]
    if not examples:
        raise ValueError(
            "model.path 'embedded' is SFT-trained on synthetic categories and datasets' bootstrap rows, and there is "
            "none; add a synthetic category (e.g. color: {source: 'synthetic:color'}), give a dataset category "
            "bootstrap rows (categories.<c>.bootstrap_fraction, or split: bootstrap in the file), or set model.path "
            "to your SFT model"
        )
    random.Random(settings.seed).shuffle(examples)
    sft_rows = sft_sizes | dict(learned.group_by("category", maintain_order=True).len().iter_rows())
    dev, dev_images = dev_check_items(categories, dataset, set(sft_rows), settings, log)
    stop = DevBandStop(settings, dev, dev_images, batch_size, max_new_tokens, log)
    corpus = [e.prompt_text for e in examples] + [e.answer for e in examples]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        init_dir = build_tiny_vlm(Path(tmp) / "init", corpus, seed=settings.seed)
        result = sft_train(init_dir, out_dir, examples, settings, stop_when=stop, log=log)
    last = {k: v for k, v in stop.checks[-1].items() if k not in ("check", "step", "mean")} if stop.checks else {}
    loss = result.final.get("loss", float("nan"))
    return BootstrapReport(result.steps, time.monotonic() - start, loss, last, stop.checks, sft_rows, dev)


class DevBandStop:
    """SFT's early stop: greedy dev checks on the band's schedule (`BootstrapSettings.next_check`), each recorded in
    `checks`; training ends at the first whose mean reaches the band with no category below its chance floor."""

    def __init__(
        self,
        settings: BootstrapSettings,
        dev: pl.DataFrame,
        dev_images: Sequence[tuple[Image.Image, ...]],
        batch_size: int,
        max_new_tokens: int,
        log: Callable[[str], None],
    ) -> None:
        self.settings, self.dev, self.dev_images, self.log = settings, dev, dev_images, log
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.floors = chance_floors(dev)  # per category: the dev accuracy below which it is at chance
        self.checks: list[dict[str, float]] = []
        self.due = settings.next_check(0, None)  # the step of the next dev check

    def __call__(self, model, processor, step: int) -> bool:
        settings = self.settings
        if step < self.due and step < settings.max_steps:
            return False
        with HFEngine.from_loaded(model, processor, batch_size=self.batch_size) as engine:  # drops only its reference
            verdicts = greedy_verdicts(engine, self.dev, self.dev_images, self.max_new_tokens)
        accuracy = dict(verdicts.group_by("category", maintain_order=True).agg(pl.col("correct").mean()).iter_rows())
        if not accuracy:
            self.log("bootstrap: no dev items to check; training runs max_steps")
            self.due = settings.max_steps
            return False
        mean = sum(accuracy.values()) / len(accuracy)
        self.checks.append({"check": len(self.checks) + 1, "step": step, "mean": mean, **accuracy})
        self.due = settings.next_check(step, max(check["mean"] for check in self.checks))
        rounded = {k: round(v, 2) for k, v in accuracy.items()}
        self.log(f"bootstrap check {len(self.checks)} at step {step}: mean dev accuracy {mean:.3f} {rounded}")
        at_chance = sorted(c for c, floor in self.floors.items() if accuracy.get(c, 0.0) < floor)
        if mean >= settings.min_mean_accuracy and at_chance:
            self.log(f"bootstrap: the mean is in the band but {at_chance} are within noise of chance: training goes on")
        return settings.stops(mean, at_chance)


def dev_check_items(
    categories: Mapping[str, SyntheticCategory],
    dataset: DatasetRows,
    trained: set[str],
    settings: BootstrapSettings,
    log: Callable[[str], None],
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]]]:
    """The early-stop check's items: each synthetic category's first `dev_per_category` dev items and each trained
    dataset category's first dev rows (one the base is not trained on would hold the stop back for nothing)."""
    sizes = dict.fromkeys(categories, settings.dev_per_category)
    dev, dev_images, _ = synthetic_split(categories, "dev", sizes, settings.seed)
    rows, images = dataset.split("dev")
    untrained = sorted(set(rows["category"]) - trained)
    if untrained:
        log(f"bootstrap: dataset categories {untrained} have no bootstrap rows; the base is not trained on them")
    keep = [i for i, c in enumerate(rows["category"]) if c in trained]
    rows, images = rows[keep].with_row_index("at"), [images[i] for i in keep]
    first = rows.group_by("category", maintain_order=True).head(settings.dev_per_category)["at"].sort().to_list()
    dev = pl.concat([dev, rows[first].select(ITEM_COLUMNS)])
    return dev, dev_images + [images[i] for i in first]
