"""The recipe's findings as named experiments on the embedded default, and how their results are read back.

An experiment is a few config variants run through the same pipeline assets, each into its own storage folder,
all from the same base model, measured on one held-out split: the sweeps that choose settings on `dev`, and only
the report of the chosen defaults (`seeds`) on `bench`; its results are one long table (EXPERIMENT_RESULTS) that `findings.py` turns into
docs/findings.md. Nothing here runs a model: `vlm_rl_assets/experiments.py` materializes the variants.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from vlm_rl_assets.evaluation.stats import OVERALL, paired_deltas
from vlm_rl_assets.model.train_result import METRICS_FILE
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

CATEGORIES = ("color", "shape_choice", "count", "describe", "scene")  # the embedded default's
SEEDS = (0, 1, 2)
BETAS = (0.1, 0.5, 2.0)
SATURATED = 0.98  # rewards/accuracies at or above this: DPO separates every pair, nothing left to learn


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys (research/variants.py)


@dataclass(frozen=True)
class Experiment:
    name: str
    job: str  # the Dagster job that runs it
    question: str  # what it asks, as docs/findings.md shows it
    expected: str  # the recipe's answer
    categories: tuple[str, ...]
    variants: tuple[Variant, ...]
    release: bool = False  # also train and score the mixture policy per variant
    # where it measures: dev for the sweeps that choose settings, bench only for reporting the chosen defaults
    split: str = "dev"


def _every_category(key: str, value: Any) -> dict[str, Any]:
    return {f"categories.{c}.{key}": value for c in CATEGORIES}


GREEDY_ONLY = {"eval.samples_per_prompt": 1}  # sweeps compare greedy accuracy: skip the pass@k sampling


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "seeds",
            "seed_repeats",
            "Does the mixture policy beat base on the default config, on every category, whatever the seed?",
            "The policy gains on average with a 95% CI above zero and no category loses (the promotion gate).",
            CATEGORIES,
            tuple(Variant(f"seed{s}", {"engine.seed": s, "training.seed": s}) for s in SEEDS),
            release=True,
            split="bench",
        ),
        Experiment(
            "chosen_source",
            "ablation_chosen_source",
            "(a) Chosen = the ground-truth answer vs. chosen = the model's own best sample.",
            "Ground truth as chosen saturates (rewards/accuracies near 1 within a few steps) and gains less.",
            ("shape_choice", "count", "describe"),
            (
                Variant("own_best_sample"),
                Variant("ground_truth", {"pairing.chosen_source": "ground_truth", "pairing.ablation": True}),
            ),
        ),
        Experiment(
            "answer_format",
            "ablation_answer_format",
            "(b) Short answers (letter / number only) vs. chain-of-thought answers for the same prompts.",
            "Chain of thought gains more: short answers give DPO one token to tell right from wrong.",
            ("shape_choice", "count"),
            (
                Variant("chain_of_thought"),
                Variant(
                    "short_answer",
                    {
                        f"categories.{c}.{key}": value
                        for c in ("shape_choice", "count")
                        for key, value in (("template", "plain"), ("min_response_words", 1))
                    },
                ),
            ),
        ),
        Experiment(
            "pass_at_k",
            "ablation_pass_at_k",
            "(c) pass@k of base vs. DPO as k grows (32 samples per prompt).",
            "DPO leads at pass@1; base catches up with or overtakes it at large k (RL sharpens, it does not teach).",
            CATEGORIES,
            (Variant("default", {"eval.samples_per_prompt": 32}),),
        ),
        Experiment(
            "beta",
            "ablation_beta",
            f"(d) Which DPO beta each category wants: a sweep over {list(BETAS)}.",
            "Long answers (chain of thought, descriptions) want a higher beta than short ones.",
            CATEGORIES,
            tuple(Variant(f"beta_{b:g}", _every_category("beta", b) | GREEDY_ONLY) for b in BETAS),
        ),
        Experiment(
            "controls",
            "ablation_controls",
            "(e) DPO vs. SFT on the chosen halves only (rejection-sampling fine-tuning) vs. DPO plus an SFT term, "
            "on the same pairs and steps.",
            "Pairs carry information their chosen halves alone do not: DPO (alone or with an SFT term) beats SFT "
            "on chosen.",
            CATEGORIES,
            tuple(
                Variant(name, _every_category("loss", {"loss_type": loss}) | GREEDY_ONLY)
                for name, loss in (("dpo", ["sigmoid"]), ("sft_on_chosen", ["sft"]), ("dpo_plus_sft", ["sigmoid", "sft"]))
            ),
        ),
    )
}


def category_done(store: Store, category: str) -> bool:
    """A variant's category is finished once its benchmark verdicts exist (written last)."""
    return store.has_table("benchmark_verdicts", category)


def release_done(store: Store) -> bool:
    return store.has_table("release_report", "verdicts")


def variant_results(store: Store, experiment: str, variant: str, categories: tuple[str, ...], release: bool) -> pl.DataFrame:
    """One variant's EXPERIMENT_RESULTS rows: accuracy (with CI), pass@k, paired delta (with CI) and mean response
    words of base and candidate per category, and the DPO run's reward-accuracy curve with its pairs and steps."""
    parts = []
    for category in categories:
        scores = store.read_table("benchmark_scores", category, schemas.BENCHMARK_SCORES)
        verdicts = store.read_table("benchmark_verdicts", category, schemas.BENCHMARK_VERDICTS)
        per_category = _deltas(verdicts, "dpo").filter(pl.col("category") != OVERALL)  # one category: no overall
        parts += [_scores(scores), per_category, _words(verdicts), _training(store, category)]
    if release:
        scores = store.read_table("release_report", "scores", schemas.BENCHMARK_SCORES)
        verdicts = store.read_table("release_report", "verdicts", schemas.BENCHMARK_VERDICTS)
        parts += [_scores(scores), _deltas(verdicts, "policy"), _words(verdicts)]
    rows = pl.concat([p.select(list(schemas.EXPERIMENT_RESULTS)[2:]) for p in parts], how="vertical_relaxed")
    rows = rows.sort("category", "model", "metric", "step", nulls_last=True)  # the same rows in the same order
    return rows.select(pl.lit(experiment).alias("experiment"), pl.lit(variant).alias("variant"), pl.all()).cast(
        schemas.EXPERIMENT_RESULTS
    )


def _scores(scores: pl.DataFrame) -> pl.DataFrame:
    return scores.select("category", "model", "metric", pl.lit(None, pl.Int64).alias("step"), "value", "ci_low", "ci_high")


def _deltas(verdicts: pl.DataFrame, candidate: str) -> pl.DataFrame:
    deltas = paired_deltas(verdicts, candidate)
    return deltas.select(
        "category",
        pl.lit(candidate).alias("model"),
        pl.lit("delta").alias("metric"),
        pl.lit(None, pl.Int64).alias("step"),
        pl.col("delta").alias("value"),
        "ci_low",
        "ci_high",
    )


def _words(verdicts: pl.DataFrame) -> pl.DataFrame:
    """Mean words per greedy response: whether a variant changed how long the model answers."""
    return (
        verdicts.group_by("category", "model")
        .agg(pl.col("response").str.split(" ").list.len().mean().alias("value"))
        .select(
            "category",
            "model",
            pl.lit("response_words").alias("metric"),
            pl.lit(None, pl.Int64).alias("step"),
            "value",
            pl.lit(None, pl.Float64).alias("ci_low"),
            pl.lit(None, pl.Float64).alias("ci_high"),
        )
    )


def _training(store: Store, category: str) -> pl.DataFrame:
    """The DPO checkpoint's reward-accuracy curve (metric rewards/accuracies, per logged step), its steps, and the
    first step where it saturated (null: never)."""
    metrics = json.loads((store.local_checkpoint("dpo_checkpoint", category) / METRICS_FILE).read_text())
    curve = [(e["step"], e["rewards/accuracies"]) for e in metrics["history"] if "rewards/accuracies" in e]
    saturated = next((step for step, value in curve if value >= SATURATED), None)
    rows = [("rewards/accuracies", step, value) for step, value in curve]
    rows += [("train_steps", None, float(metrics["steps"])), ("saturation_step", None, saturated)]
    return pl.DataFrame(
        [
            {"category": category, "model": "dpo", "metric": m, "step": s, "value": v, "ci_low": None, "ci_high": None}
            for m, s, v in rows
        ],
        schema={k: schemas.EXPERIMENT_RESULTS[k] for k in list(schemas.EXPERIMENT_RESULTS)[2:]},
    )
