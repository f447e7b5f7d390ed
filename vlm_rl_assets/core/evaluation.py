"""Benchmark a model on a category's held-out prompts: greedy responses, judged by rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl
from PIL import Image

from vlm_rl_assets.core.engine import Engine, GenerationRequest, SamplingParams
from vlm_rl_assets.core.judges import judge


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


def summarize(verdicts: pl.DataFrame, model: str) -> pl.DataFrame:
    """Per category: accuracy (fraction fully correct) and mean score (partial credit)."""
    return (
        verdicts.group_by("category")
        .agg(accuracy=pl.col("correct").cast(pl.Float64).mean(), mean_score=pl.col("score").mean(), n=pl.len().cast(pl.Int64))
        .unpivot(index=["category", "n"], on=["accuracy", "mean_score"], variable_name="metric", value_name="value")
        .with_columns(model=pl.lit(model))
        .select("category", "model", "metric", "value", "n")
        .sort("category", "metric")
    )
