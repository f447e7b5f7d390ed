"""The recipe's findings as named experiments on the embedded default, and how their results are read back.

An experiment is a few config variants run through the same pipeline assets, each into its own storage folder,
all from the same base model, measured on one held-out split: the sweeps that choose settings on `dev`, and only
the reports (the chosen defaults' `seeds`, the `rounds` and `grpo_vs_dpo` comparisons) on `bench`; its results are
one long table (EXPERIMENT_RESULTS), with the releases' verdicts per bench prompt beside it (EXPERIMENT_ITEMS), that
`findings.py` turns into docs/findings.md. Nothing here runs a model:
`research/runner.py` materializes the variants.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from vlm_rl_assets.config import DEFAULT_CONFIG_PATH, load_config
from vlm_rl_assets.evaluation.cost_report import cost_table
from vlm_rl_assets.evaluation.stats import OVERALL, paired_deltas
from vlm_rl_assets.model.train_result import METRICS_FILE
from vlm_rl_assets.names import (
    BENCHMARK_SCORES,
    DPO_CHECKPOINT,
    FILTERED_ROLLOUTS,
    JUDGED_PAIRS,
    POLICY_CHECKPOINT,
    PROMPT_MIXTURE,
    RELEASE_REPORT,
    ROLLOUTS,
)
from vlm_rl_assets.rounds.plan import read_outcome
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store, round_key
from vlm_rl_assets.store.costs import latest_costs

CATEGORIES = ("color", "shape_choice", "count", "describe", "scene")  # the embedded default's
SEEDS = (0, 1, 2)
BETAS = (0.1, 0.5, 2.0)
SATURATED = 0.98  # rewards/accuracies at or above this: DPO separates every pair, nothing left to learn
# equal generated tokens: every arm of (f) and (g) samples as many completions per train prompt over all its rounds,
# each cut at the same length, from the embedded default's settings (one samples_per_prompt for every category)
_DEFAULT = load_config(DEFAULT_CONFIG_PATH)
(SAMPLES,) = {category.samples_per_prompt for category in _DEFAULT.categories.values()}
ROUND_COUNTS = (1, 2, 3)  # (f): 3 rounds of SAMPLES per prompt, 2 of 1.5x, 1 of 3x
DPO_ROUNDS = 2  # (g): iterative DPO's rounds of SAMPLES; GRPO samples as many completions in its epochs
GRPO_GENERATIONS = SAMPLES
GRPO_AT_EQUAL_TOKENS = {
    "training.algorithm": "grpo",
    "training.epochs": DPO_ROUNDS * SAMPLES // GRPO_GENERATIONS,  # an epoch samples GRPO_GENERATIONS per prompt
    "training.grpo.num_generations": GRPO_GENERATIONS,
    "training.grpo.max_completion_length": _DEFAULT.engine.max_new_tokens,  # cut where the rollouts are
}
# what a mixture policy is made by (GRPO: prompt_mixture and policy_checkpoint): the stages whose cost is its cost
POLICY_STAGES = (PROMPT_MIXTURE, ROLLOUTS, FILTERED_ROLLOUTS, JUDGED_PAIRS, POLICY_CHECKPOINT)
ROW = dict(list(schemas.EXPERIMENT_RESULTS.items())[2:])  # a result row without its experiment and variant
COSTS = {  # result metric: (cost table column, divisor)
    "generated_tokens": ("generated_tokens", 1),
    "cpu_hours": ("cpu_seconds", 3600),
    "accelerator_hours": ("accelerator_seconds", 3600),
    "wall_hours": ("wall_seconds", 3600),
}


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
    # where it measures: dev for the sweeps that choose settings, bench only for reports
    split: str = "dev"
    # False: the category stages run only as far as the mixture policy needs (judged pairs; GRPO: the prompts, it
    # samples while it trains), not the per-category checkpoints and scores, and the results are the release's,
    # per round, with what each round cost. True: one round, and every category's own DPO run is measured too
    per_category: bool = True


def _every_category(key: str, value: Any) -> dict[str, Any]:
    return {f"categories.{c}.{key}": value for c in CATEGORIES}


GREEDY_ONLY = {"eval.samples_per_prompt": 1}  # sweeps compare greedy accuracy: skip the pass@k sampling


def _seeded(seed: int) -> dict[str, Any]:
    return {"engine.seed": seed, "training.seed": seed}


def _rounds(count: int) -> dict[str, Any]:
    return {"rounds.count": count, "rounds.stop_early": False}  # every round runs: round counts are compared


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "seeds",
            "seed_repeats",
            "Does the mixture policy beat base on the default config, on every category, whatever the seed?",
            "The policy gains on average with a 95% CI above zero and no category loses (the promotion gate).",
            CATEGORIES,
            tuple(Variant(f"seed{s}", _seeded(s)) for s in SEEDS),
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
                for name, loss in (
                    ("dpo", ["sigmoid"]),
                    ("sft_on_chosen", ["sft"]),
                    ("dpo_plus_sft", ["sigmoid", "sft"]),
                )
            ),
        ),
        Experiment(
            "rounds",
            "ablation_rounds",
            f"(f) {' vs. '.join(map(str, ROUND_COUNTS))} on-policy rounds of DPO, at equal generated tokens "
            f"({max(ROUND_COUNTS) * SAMPLES} samples per train prompt over all rounds).",
            "More rounds gain more for the same tokens: each round's pairs describe the policy being trained, not the "
            "base.",
            CATEGORIES,
            tuple(
                Variant(
                    f"rounds{n}_seed{s}",
                    _rounds(n)
                    | _every_category("samples_per_prompt", max(ROUND_COUNTS) * SAMPLES // n)
                    | _seeded(s)
                    | GREEDY_ONLY,
                )
                for s in SEEDS  # seed by seed: a run stopped early has whole seeds of every arm
                for n in ROUND_COUNTS
            ),
            release=True,
            split="bench",
            per_category=False,
        ),
        Experiment(
            "grpo_vs_dpo",
            "ablation_grpo_vs_dpo",
            f"(g) Online GRPO vs. {DPO_ROUNDS} rounds of iterative DPO, at equal generated tokens "
            f"({DPO_ROUNDS * SAMPLES} completions per train prompt).",
            "GRPO gains more for the same tokens: it samples from the policy at every step, not once per round.",
            CATEGORIES,
            tuple(
                variant
                for s in SEEDS  # seed by seed, as (f)
                for variant in (
                    Variant(f"dpo_{DPO_ROUNDS}_rounds_seed{s}", _rounds(DPO_ROUNDS) | _seeded(s) | GREEDY_ONLY),
                    Variant(f"grpo_seed{s}", _rounds(1) | GRPO_AT_EQUAL_TOKENS | _seeded(s) | GREEDY_ONLY),
                )
            ),
            release=True,
            split="bench",
            per_category=False,
        ),
    )
}


def category_done(store: Store, category: str, pipeline_round: int, last_stage: str) -> bool:
    """A variant's category is finished in a round once the table its last stage writes last exists: the benchmark
    verdicts, the judged pairs, or (GRPO's mixture needs only them) the prompts, one table for every round."""
    if last_stage == PROMPT_MIXTURE:
        return store.has_table(last_stage, category)
    table = "benchmark_verdicts" if last_stage == BENCHMARK_SCORES else last_stage
    return store.has_table(table, round_key(category, pipeline_round))


def release_done(store: Store, pipeline_round: int, rounds: int) -> bool:
    """The round's release report is written, and with rounds its outcome (round_gain), which the next round needs."""
    reported = store.has_table(RELEASE_REPORT, round_key("verdicts", pipeline_round))
    return reported and (rounds == 1 or read_outcome(store, pipeline_round) is not None)


def variant_results(store: Store, experiment: Experiment, variant: str, rounds: int) -> pl.DataFrame:
    """One variant's EXPERIMENT_RESULTS rows. Per category (per_category experiments): accuracy (with CI), pass@k,
    paired delta (with CI) and mean response words of base and candidate, and the DPO run's reward-accuracy curve
    with its pairs and steps. Per round of the release (`step`: the round): the same for the mixture policy, its
    dev gain over the model the round started from (with rounds), and what making it cost (`cost_rows`)."""
    parts = []
    for category in experiment.categories if experiment.per_category else ():
        scores = store.read_table(BENCHMARK_SCORES, category, schemas.BENCHMARK_SCORES)
        verdicts = store.read_table("benchmark_verdicts", category, schemas.BENCHMARK_VERDICTS)
        per_category = _deltas(verdicts, "dpo").filter(pl.col("category") != OVERALL)  # one category: no overall
        parts += [_scores(scores), per_category, _words(verdicts), _training(store, category)]
    for pipeline_round in range(1, rounds + 1) if experiment.release else ():
        scores = store.read_table(RELEASE_REPORT, round_key("scores", pipeline_round), schemas.BENCHMARK_SCORES)
        verdicts = store.read_table(RELEASE_REPORT, round_key("verdicts", pipeline_round), schemas.BENCHMARK_VERDICTS)
        released = [_scores(scores), _deltas(verdicts, "policy"), _words(verdicts), _dev_gain(store, pipeline_round)]
        parts += [p.with_columns(step=pl.lit(pipeline_round, pl.Int64)) for p in released]
    if experiment.release:
        parts.append(cost_rows(store, rounds))
    rows = pl.concat([p.select(list(ROW)) for p in parts], how="vertical_relaxed")
    rows = rows.sort("category", "model", "metric", "step", nulls_last=True)  # the same rows in the same order
    return rows.select(pl.lit(experiment.name).alias("experiment"), pl.lit(variant).alias("variant"), pl.all()).cast(
        schemas.EXPERIMENT_RESULTS
    )


def variant_items(store: Store, experiment: Experiment, variant: str, rounds: int) -> pl.DataFrame:
    """One released variant's EXPERIMENT_ITEMS rows: each round's mixture policy's greedy verdict per prompt of the
    release's benchmark, what findings.py pairs two arms on."""
    items = pl.concat(
        store.read_table(RELEASE_REPORT, round_key("verdicts", r), schemas.BENCHMARK_VERDICTS)
        .filter(pl.col("model") == "policy")
        .select(pl.lit(r, pl.Int64).alias("step"), "category", "prompt_id", "correct")
        for r in range(1, rounds + 1)
    )
    return items.select(pl.lit(experiment.name).alias("experiment"), pl.lit(variant).alias("variant"), pl.all()).cast(
        schemas.EXPERIMENT_ITEMS
    )


def cost_rows(store: Store, rounds: int) -> pl.DataFrame:
    """What making the variant's mixture policy cost (its POLICY_STAGES' latest cost rows, `store/costs.py`): metrics
    COSTS per round (`step`) and in all (`step` null); benchmarks and round_gain are measurement, not counted."""
    spent = latest_costs(store).filter(pl.col("asset").is_in(POLICY_STAGES))
    rows = []
    for pipeline_round in [*range(1, rounds + 1), None]:
        part = spent if pipeline_round is None else spent.filter(pl.col("round") == pipeline_round)
        total = cost_table(part).row(-1, named=True)
        rows += [
            {
                "category": OVERALL,
                "model": "policy",
                "metric": name,
                "step": pipeline_round,
                "value": total[column] / divisor,
                "ci_low": None,
                "ci_high": None,
            }
            for name, (column, divisor) in COSTS.items()
        ]
    return pl.DataFrame(rows, schema=ROW)


def _dev_gain(store: Store, pipeline_round: int) -> pl.DataFrame:
    """round_gain's paired dev delta of the round's policy over the model the round started from (a fraction, like
    every delta here); no row with one round, where round_gain does not run."""
    outcome = read_outcome(store, pipeline_round)
    gain = [] if outcome is None else [(outcome.dev_gain, *outcome.dev_gain_ci)]
    rows = [(OVERALL, "policy", "dev_gain", None, *(points / 100 for points in values)) for values in gain]
    return pl.DataFrame(rows, schema=ROW, orient="row")


def _scores(scores: pl.DataFrame) -> pl.DataFrame:
    return scores.select(
        "category", "model", "metric", pl.lit(None, pl.Int64).alias("step"), "value", "ci_low", "ci_high"
    )


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
    metrics = json.loads((store.local_checkpoint(DPO_CHECKPOINT, category) / METRICS_FILE).read_text())
    curve = [(e["step"], e["rewards/accuracies"]) for e in metrics["history"] if "rewards/accuracies" in e]
    saturated = next((step for step, value in curve if value >= SATURATED), None)
    rows = [("rewards/accuracies", step, value) for step, value in curve]
    rows += [("train_steps", None, float(metrics["steps"])), ("saturation_step", None, saturated)]
    return pl.DataFrame(
        [
            {"category": category, "model": "dpo", "metric": m, "step": s, "value": v, "ci_low": None, "ci_high": None}
            for m, s, v in rows
        ],
        schema=ROW,
    )
