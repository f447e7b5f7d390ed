"""The embedded default's base model: a tiny Qwen2-VL built here and SFT-trained to an imperfect level.

DPO needs headroom: the base must answer in the right format and be right only part of the time.
SFT stops at the first held-out check where every category is right often enough for its rollout
groups to hold right and wrong answers, or where the mean accuracy reaches a ceiling.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.prompts import world
from vlm_rl_assets.evaluation.benchmarks import greedy_verdicts
from vlm_rl_assets.prompts.prompt_table import apply_template, reference_response


@dataclass
class BootstrapReport:
    steps: int
    seconds: float
    final_loss: float
    dev_accuracy: dict[str, float]  # per category, at the last check
    checks: list[dict[str, float]] = field(default_factory=list)  # step and per-category accuracy of each check


def synthetic_split(
    config: PipelineConfig, split: str, sizes: dict[str, int], short_answer_share: float = 0.0
) -> tuple[pl.DataFrame, list[tuple], list[str]]:
    """The items of a split of the synthetic categories `sizes` names (with their sizes): a prompt table, their
    images, and reference responses; `short_answer_share` of a chain-of-thought category's items are asked plainly."""
    rows, images, references = [], [], []
    for category, size in sizes.items():
        cat = config.category(category)
        plain = random.Random(f"{category}/{split}/short/{config.bootstrap.seed}")
        for item in world.generate(cat.task, split, size, config.bootstrap.seed):
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


def bootstrap_embedded_model(out_dir: Path, config: PipelineConfig, log: Callable[[str], None]) -> BootstrapReport:
    from vlm_rl_assets.rollouts.engine import HFEngine
    from vlm_rl_assets.model.tiny_model import build_tiny_vlm
    from vlm_rl_assets.dpo.training import SFTSettings, TrainExample, sft_train

    settings = config.bootstrap
    synthetic = [c for c, cat in config.categories.items() if cat.synthetic]
    if not synthetic:
        raise ValueError(
            "model.path 'embedded' is SFT-trained on synthetic categories and there is none; add one "
            "(e.g. color: {source: 'synthetic:color'}) or set model.path to your SFT model"
        )
    for category, cat in config.categories.items():
        if not cat.synthetic:
            log(f"bootstrap: category {category!r} is a dataset ({cat.source}); the embedded model is not trained on it")
    sft_sizes = {c: settings.examples_override.get(c, settings.examples_per_category) for c in synthetic}
    train, train_images, references = synthetic_split(config, "sft", sft_sizes, settings.short_answer_share)
    examples = [TrainExample(text, imgs, ref) for text, imgs, ref in zip(train["prompt_text"], train_images, references)]
    random.Random(settings.seed).shuffle(examples)
    dev, dev_images, _ = synthetic_split(config, "dev", dict.fromkeys(synthetic, settings.dev_per_category))
    checks: list[dict[str, float]] = []

    def good_enough(model, processor) -> bool:
        engine = HFEngine.from_loaded(model, processor, batch_size=config.engine.batch_size)
        verdicts = greedy_verdicts(engine, dev, dev_images, config.eval.max_new_tokens)
        accuracy = dict(verdicts.group_by("category").agg(pl.col("correct").mean()).iter_rows())
        checks.append({"check": len(checks) + 1, **accuracy})
        mean = sum(accuracy.values()) / len(accuracy)
        log(f"bootstrap check {len(checks)}: mean dev accuracy {mean:.2f} {({k: round(v, 2) for k, v in accuracy.items()})}")
        return min(accuracy.values()) >= settings.min_category_accuracy or mean >= settings.max_mean_accuracy

    corpus = [e.prompt_text for e in examples] + [e.answer for e in examples]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        init_dir = build_tiny_vlm(Path(tmp) / "init", corpus, seed=settings.seed)
        result = sft_train(
            init_dir,
            out_dir,
            examples,
            SFTSettings(
                max_steps=settings.max_steps,
                batch_size=settings.batch_size,
                learning_rate=settings.learning_rate,
                seed=settings.seed,
                eval_every=settings.eval_every,
                log_every=settings.eval_every,
            ),
            stop_when=good_enough,
            log=log,
        )
    last = {k: v for k, v in checks[-1].items() if k != "check"} if checks else {}
    return BootstrapReport(result.steps, time.monotonic() - start, result.final.get("loss", float("nan")), last, checks)
