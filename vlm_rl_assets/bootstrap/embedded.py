"""The embedded default's base model: a tiny Qwen2-VL built here and SFT-trained to an imperfect level.

DPO needs headroom: the base must answer in the right format and be right only part of the time.
SFT stops at the first check on the dev split (the same seed stream as prompt_mixture's dev prompts; bench is
never read here) where every category is right often enough for its rollout groups to hold right and wrong
answers, or where the mean accuracy reaches a ceiling.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from vlm_rl_assets.bootstrap.settings import BootstrapSettings, SyntheticCategory
from vlm_rl_assets.evaluation.benchmarks import greedy_verdicts
from vlm_rl_assets.prompts import world
from vlm_rl_assets.prompts.prompt_table import apply_template, reference_response
from vlm_rl_assets.rollouts.engine import HFEngine


@dataclass
class BootstrapReport:
    steps: int
    seconds: float
    final_loss: float
    dev_accuracy: dict[str, float]  # per category, at the last check
    checks: list[dict[str, float]] = field(default_factory=list)  # step and per-category accuracy of each check


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
    return pl.DataFrame(rows), images, references


def bootstrap_embedded_model(
    out_dir: Path,
    settings: BootstrapSettings,
    categories: Mapping[str, SyntheticCategory],
    batch_size: int,
    max_new_tokens: int,
    log: Callable[[str], None],
) -> BootstrapReport:
    """Build the tiny VLM and SFT it on `categories` into `out_dir`, checking held-out greedy accuracy every
    `eval_every` steps with `batch_size` sequences per generate call and `max_new_tokens`."""
    # heavy (torch, transformers, TRL): imported when the base model is built, not when the code location loads
    from vlm_rl_assets.bootstrap.sft import TrainExample, sft_train
    from vlm_rl_assets.model.tiny_model import build_tiny_vlm

    if not categories:
        raise ValueError(
            "model.path 'embedded' is SFT-trained on synthetic categories and there is none; add one "
            "(e.g. color: {source: 'synthetic:color'}) or set model.path to your SFT model"
        )
    synthetic = list(categories)
    sft_sizes = {c: settings.examples_override.get(c, settings.examples_per_category) for c in synthetic}
    train, train_images, references = synthetic_split(categories, "sft", sft_sizes, settings.seed, settings.short_answer_share)
    examples = [TrainExample(text, imgs, ref) for text, imgs, ref in zip(train["prompt_text"], train_images, references)]
    random.Random(settings.seed).shuffle(examples)
    dev, dev_images, _ = synthetic_split(categories, "dev", dict.fromkeys(synthetic, settings.dev_per_category), settings.seed)
    checks: list[dict[str, float]] = []

    def good_enough(model, processor) -> bool:
        with HFEngine.from_loaded(model, processor, batch_size=batch_size) as engine:  # drops only its reference
            verdicts = greedy_verdicts(engine, dev, dev_images, max_new_tokens)
        accuracy = dict(verdicts.group_by("category").agg(pl.col("correct").mean()).iter_rows())
        checks.append({"check": len(checks) + 1, **accuracy})
        mean = sum(accuracy.values()) / len(accuracy)
        log(f"bootstrap check {len(checks)}: mean dev accuracy {mean:.2f} {({k: round(v, 2) for k, v in accuracy.items()})}")
        return min(accuracy.values()) >= settings.min_category_accuracy or mean >= settings.max_mean_accuracy

    corpus = [e.prompt_text for e in examples] + [e.answer for e in examples]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        init_dir = build_tiny_vlm(Path(tmp) / "init", corpus, seed=settings.seed)
        result = sft_train(init_dir, out_dir, examples, settings, stop_when=good_enough, log=log)
    last = {k: v for k, v in checks[-1].items() if k != "check"} if checks else {}
    return BootstrapReport(result.steps, time.monotonic() - start, result.final.get("loss", float("nan")), last, checks)
