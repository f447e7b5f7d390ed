"""Benchmark a model on a category's held-out prompts: greedy responses for the headline accuracy, sampled ones
for pass@k, all judged by rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl
from PIL import Image

from vlm_rl_assets.store import schemas
from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest, SamplingParams
from vlm_rl_assets.judging.rules import judge
from vlm_rl_assets.evaluation.stats import bootstrap_ci, pass_at_k_curve


def greedy_verdicts(
    engine: Engine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    max_new_tokens: int,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """One greedy response per prompt with its score and correctness."""
    requests = [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images)]
    completions = engine.generate(requests, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens), progress)
    rows = []
    for prompt, (completion,) in zip(prompts.iter_rows(named=True), completions):
        verdict = judge(prompt["answer_type"], completion.text, prompt["answer"], prompt["objects"], prompt["choices"])
        rows.append(
            {
                "prompt_id": prompt["prompt_id"],
                "category": prompt["category"],
                "response": completion.text,
                "score": verdict.score,
                "correct": verdict.correct,
            }
        )
    return pl.DataFrame(rows, schema={"prompt_id": pl.String, "category": pl.String, "response": pl.String, "score": pl.Float64, "correct": pl.Boolean})


def sampled_correct(
    engine: Engine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    params: SamplingParams,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """How many of `params.n` sampled responses per prompt are fully correct: the input of unbiased pass@k."""
    requests = [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images)]
    completions = engine.generate(requests, params, progress)
    rows = []
    for prompt, samples in zip(prompts.iter_rows(named=True), completions):
        verdicts = [judge(prompt["answer_type"], s.text, prompt["answer"], prompt["objects"], prompt["choices"]) for s in samples]
        rows.append({"prompt_id": prompt["prompt_id"], "category": prompt["category"], "n_correct": sum(v.correct for v in verdicts)})
    return pl.DataFrame(rows, schema={"prompt_id": pl.String, "category": pl.String, "n_correct": pl.Int64})


def summarize(verdicts: pl.DataFrame, sampled: pl.DataFrame, samples: int, model: str, seed: int = 0) -> pl.DataFrame:
    """Per category: greedy accuracy (fraction fully correct) and mean score (partial credit), each with a 95%
    bootstrap CI over prompts, and pass@1..pass@`samples` from the sampled responses (BENCHMARK_SCORES rows)."""
    rows = []
    for category in sorted(set(verdicts["category"])):
        greedy = verdicts.filter(pl.col("category") == category)
        n = greedy.height
        for metric, values in (("accuracy", greedy["correct"].cast(pl.Float64)), ("mean_score", greedy["score"])):
            mean, low, high = bootstrap_ci(values.to_list(), seed=seed)
            rows.append((category, model, metric, mean, n, low, high))
        counts = sampled.filter(pl.col("category") == category)["n_correct"].to_list()
        rows += [(category, model, f"pass@{k}", p, n, None, None) for k, p in enumerate(pass_at_k_curve(counts, samples), 1)]
    return pl.DataFrame(rows, schema=schemas.BENCHMARK_SCORES, orient="row")
