"""The hack monitor on the bench: how many greedy responses show gaming patterns (`judging/gaming.py`) before and
after DPO, paired on the same prompts, so a policy that learned to game its judge shows up whatever the accuracy."""

from __future__ import annotations

import polars as pl

from vlm_rl_assets.judging.gaming import flag_responses, gaming_share, length_limit

BASE = "base"


def bench_gaming(verdicts: pl.DataFrame, prompts: pl.DataFrame, factor: float) -> pl.DataFrame:
    """The benchmark verdicts with the `patterns` each response shows and `gaming` (any of them). A length outlier
    has more than `factor` times the words of the base model's median response in its category."""
    table = verdicts.join(prompts.select("prompt_id", "answer_type", "choices"), on="prompt_id", how="left")
    parts = [
        flag_responses(group, length_limit(group.filter(pl.col("model") == BASE)["response"], factor))
        for _, group in table.group_by("category", maintain_order=True)
    ]
    return pl.concat(parts).with_columns(gaming=pl.col("patterns").list.len() > 0)


def gaming_shares(flagged: pl.DataFrame) -> pl.DataFrame:
    """Per category and model: the number of responses and the share showing each pattern and any (rounded)."""
    rows = [
        {"category": category, "model": model, "n": group.height, **gaming_share(group["patterns"].to_list())}
        for (category, model), group in flagged.group_by("category", "model")
    ]
    return pl.DataFrame(rows).sort("category", "model")


def gaming_rises(flagged: pl.DataFrame, candidate: str) -> pl.DataFrame:
    """Per category, on the prompts both models answered: the share of base and candidate responses with any
    pattern, and the candidate's rise over base (the difference of counts over the prompts, so exact)."""
    base = flagged.filter(pl.col("model") == BASE).select("category", "prompt_id", base="gaming")
    trained = flagged.filter(pl.col("model") == candidate).select("category", "prompt_id", trained="gaming")
    return (
        base.join(trained, on=["category", "prompt_id"])
        .group_by("category")
        .agg(
            n=pl.len(),
            base=pl.col("base").mean(),
            trained=pl.col("trained").mean(),
            rise=(pl.col("trained").cast(pl.Int64).sum() - pl.col("base").cast(pl.Int64).sum()) / pl.len(),
        )
        .sort("category")
    )


def gaming_problems(rises: pl.DataFrame, max_rise: float) -> list[str]:
    """A warning per category whose share of responses with gaming patterns rose by more than `max_rise`."""
    return [
        f"category '{row['category']}': responses with gaming patterns rose from {row['base']:.3f} to "
        f"{row['trained']:.3f} ({row['rise']:+.3f}, above eval.max_gaming_rise {max_rise})"
        for row in rises.iter_rows(named=True)
        if row["rise"] > max_rise
    ]


def flagged_examples(flagged: pl.DataFrame, candidate: str, limit: int = 5) -> pl.DataFrame:
    """Up to `limit` of the candidate's responses that show a pattern, to read."""
    examples = flagged.filter((pl.col("model") == candidate) & pl.col("gaming"))
    return examples.head(limit).select("category", "prompt_id", pl.col("patterns").list.join(", "), "response")
