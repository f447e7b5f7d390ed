"""Column contracts of the tables passed between stages, checked on write and on read."""

from __future__ import annotations

import dataclasses

import polars as pl

from vlm_rl_assets.metering import Usage

PROMPTS = {
    "prompt_id": pl.String,
    "category": pl.String,
    "split": pl.String,  # train | dev | bench
    "question": pl.String,
    "prompt_text": pl.String,  # after the category's template
    "answer": pl.String,  # verifiable ground truth
    "answer_type": pl.String,  # number | choice | text | structured | open | math | ocr
    "reference": pl.String,  # a full response in the template's format (SFT target, GT style)
    "choices": pl.List(pl.String),
    "images": pl.List(pl.String),  # URIs into the image store
    "objects": pl.List(pl.String),  # true objects ("red circle"), for scene scoring
}

ROLLOUTS = {
    "prompt_id": pl.String,
    "sample_idx": pl.Int32,
    "response": pl.String,
    "n_tokens": pl.Int32,
    "finish_reason": pl.String,
    "policy_id": pl.String,
    "engine": pl.String,
    "seed": pl.Int64,
    "temperature": pl.Float64,
    "top_p": pl.Float64,
}

ROLLOUT_MANIFEST = {  # one row, written after the rollout table: what it was made from
    "category": pl.String,
    "fingerprint": pl.String,  # hash of everything below except rows: names the shard set
    "policy_id": pl.String,
    "engine": pl.String,
    "samples_per_prompt": pl.Int64,
    "temperatures": pl.List(pl.Float64),  # one, or the sweep
    "top_p": pl.Float64,
    "max_new_tokens": pl.Int64,
    "seed": pl.Int64,  # base seed; shard i samples with a seed derived from it and i
    "shard_prompts": pl.Int64,
    "shards": pl.List(pl.String),  # store keys, in order
    "prompt_ids": pl.List(pl.String),  # in order
    "rows": pl.Int64,
}

ROLLOUT_DIVERSITY = {  # one row per group (prompt)
    "prompt_id": pl.String,
    "samples": pl.Int64,
    "distinct_1": pl.Float64,  # unique / total unigrams over the group's responses; null without any
    "distinct_2": pl.Float64,  # same for bigrams
    "unique_fraction": pl.Float64,  # distinct responses / responses
    "embedding_distance": pl.Float64,  # mean pairwise cosine distance; null without the `diversity` extra
}

FILTERED_ROLLOUTS = {
    **ROLLOUTS,
    "score": pl.Float64,  # the judge's score in [0, 1]; rows it failed on are quarantined, not here
    "correct": pl.Boolean,
    "judge_reason": pl.String,  # why the judge gave that score
    "kept": pl.Boolean,
    "drop_reason": pl.String,  # null when kept
}

JUDGED_PAIRS = {
    "pair_id": pl.String,
    "prompt_id": pl.String,
    "category": pl.String,
    "prompt_text": pl.String,
    "images": pl.List(pl.String),
    "chosen": pl.String,
    "rejected": pl.String,
    "chosen_score": pl.Float64,
    "rejected_score": pl.Float64,
    "margin": pl.Float64,
    "beta": pl.Float64,
    "judge": pl.String,
    "on_policy": pl.Boolean,
}

REFERENCE_LOGPS = {  # beside judged_pairs: the reference model's log-probs of each pair, reused on retrain
    "reference": pl.String,  # reference_key: the reference model's fingerprint, TRL/transformers versions, max_length
    "pair_hash": pl.String,  # content hash of the pair (prompt, images, chosen, rejected)
    "pair_id": pl.String,
    "ref_chosen_logps": pl.Float64,
    "ref_rejected_logps": pl.Float64,
}

BENCHMARK_SCORES = {
    "category": pl.String,
    "model": pl.String,  # base | dpo | policy
    "metric": pl.String,  # accuracy (greedy) | mean_score (greedy) | pass@1 .. pass@N (sampled, unbiased)
    "value": pl.Float64,
    "n": pl.Int64,  # bench prompts
    "ci_low": pl.Float64,  # 95% bootstrap CI over prompts; null for pass@k
    "ci_high": pl.Float64,
}

BENCHMARK_DELTAS = {  # candidate minus base greedy accuracy, paired on the same prompts
    "category": pl.String,  # a category, or "overall" (mean over categories)
    "delta": pl.Float64,
    "ci_low": pl.Float64,  # 95% paired bootstrap CI
    "ci_high": pl.Float64,
    "n": pl.Int64,
}

RELEASE_CANDIDATE = {  # one row, written after the release report's other tables: the checkpoint they benchmarked
    "policy_id": pl.String,  # model_fingerprint of the policy checkpoint
    "checkpoint_uri": pl.String,
    "split": pl.String,  # the held-out split the report measured (eval.split): only bench can promote
}

BENCHMARK_ANSWERS = {  # a model's responses to a category's bench prompts, kept so it is never asked twice
    "category": pl.String,
    "prompt_id": pl.String,
    "response": pl.String,  # greedy
    "samples": pl.List(pl.String),  # eval.samples_per_prompt sampled responses, for pass@k
}

BENCHMARK_VERDICTS = {  # one greedy response per model and bench prompt: what the accuracies are computed from
    "category": pl.String,
    "prompt_id": pl.String,
    "response": pl.String,
    "score": pl.Float64,
    "correct": pl.Boolean,
    "model": pl.String,  # base | dpo | policy
}

EXPERIMENT_RESULTS = {  # research/experiments.py: one variant's numbers, long format
    "experiment": pl.String,
    "variant": pl.String,
    "category": pl.String,  # a category, or "overall"
    "model": pl.String,  # base | dpo | policy
    "metric": pl.String,  # accuracy | mean_score | pass@k | delta | response_words | rewards/accuracies | dev_gain |
    # generated_tokens | cpu_hours | accelerator_hours | wall_hours | ...
    "step": pl.Int64,  # training step of a curve point; the round of a release row (a cost row: null for all rounds)
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}

EXPERIMENT_ITEMS = {  # research/experiments.py: each round's mixture policy's greedy verdict per bench prompt, so two
    # arms are compared item by item (a paired CI), not only through their deltas over base
    "experiment": pl.String,
    "variant": pl.String,
    "step": pl.Int64,  # the round
    "category": pl.String,
    "prompt_id": pl.String,
    "correct": pl.Boolean,
}

HUMAN_LABELS = {  # labels/<category>: a person's verdict on a sampled rollout (reviewing/labels.py), one row per item
    "prompt_id": pl.String,  # the item: (prompt_id, sample_idx) of rollouts[c]
    "sample_idx": pl.Int32,
    "response": pl.String,  # the text labelled: a label whose rollout now says something else is stale
    "verdict": pl.Boolean,  # the judge's `correct` the person was shown
    "label": pl.Boolean,  # the person's: is the response right?
    "who": pl.String,
    "labelled_at": pl.Datetime("us", "UTC"),
    "replaced": pl.Int64,  # earlier labels of this item this one replaced (the last label wins)
}

ROUND_OUTCOMES = {  # rounds/round<r>: one row per finished round, what decides whether round r+1 runs
    "round": pl.Int64,
    "dev_gain": pl.Float64,  # points of mean dev accuracy over the policy the round started from (paired)
    "dev_gain_ci_low": pl.Float64,
    "dev_gain_ci_high": pl.Float64,
    "min_gain": pl.Float64,  # rounds.min_gain when it was measured
    "gate_problems": pl.List(pl.String),  # the promotion gate's reasons against the round's policy (empty: passed)
}

COSTS = {  # costs/<asset>/<category>: one row per materialization, what it spent (`metering.Usage`, store/costs.py)
    "asset": pl.String,
    "category": pl.String,  # the partition; "all" for an unpartitioned asset
    "round": pl.Int64,  # the pipeline round (1 until rounds exist)
    "run_id": pl.String,
    "recorded_at": pl.Datetime("us", "UTC"),
    **{f.name: pl.Int64 if f.type == "int" else pl.Float64 for f in dataclasses.fields(Usage)},
}

BASE_MODEL_CHANCE = {  # base_model/chance: each category's dev accuracy against chance (evaluation/chance.py)
    "category": pl.String,
    "model": pl.String,  # model.path the verdict is about ("embedded": the checkpoint base_model built)
    "n": pl.Int64,  # dev items the accuracy was measured on
    "chance": pl.Float64,  # null for open answers
    "chance_rule": pl.String,  # how chance was found: the most common answer, or a uniform guess among the choices
    "dev_accuracy": pl.Float64,  # greedy, at the bootstrap's last dev check; null: no dev check
    "margin": pl.Float64,  # noise: 1.5 binomial standard errors of chance on n items, at least 0.05
    "verdict": pl.String,  # at_chance | above_chance | unchecked | no_chance_level
    "message": pl.String,  # at_chance: the warning, with what to do and the override
}

QUARANTINE = {
    "stage": pl.String,
    "category": pl.String,
    "key": pl.String,  # the offending row's id
    "reason": pl.String,
}


class SchemaError(ValueError):
    pass


def check(df: pl.DataFrame, schema: dict[str, pl.DataType], table: str) -> pl.DataFrame:
    """Return df with exactly the schema's columns in order; raise naming what is missing or mistyped."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise SchemaError(f"table {table!r} lacks columns {missing}; it has {df.columns}")
    wrong = {c: (str(df.schema[c]), str(t)) for c, t in schema.items() if df.schema[c] != t and df.height}
    if wrong:
        detail = ", ".join(f"{c}: {got} (expected {want})" for c, (got, want) in wrong.items())
        raise SchemaError(f"table {table!r} has mistyped columns: {detail}")
    return df.select(list(schema)).cast(schema)


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
