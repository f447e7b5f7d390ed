"""Benchmark a model on a category's held-out prompts: greedy responses for the headline accuracy, sampled ones
for pass@k (`bench_answers`), all judged by rule with the settings the training verdicts use (`BenchJudging`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
from PIL import Image

from vlm_rl_assets.evaluation.settings import EvalSettings
from vlm_rl_assets.evaluation.stats import bootstrap_ci, pass_at_k_curve
from vlm_rl_assets.judging.contract import Verdict
from vlm_rl_assets.judging.rules import judge, text_answers
from vlm_rl_assets.judging.scene import object_vocabulary
from vlm_rl_assets.judging.settings import ReferenceSettings, RuleSettings
from vlm_rl_assets.names import BENCHMARK_SCORES, PROMPT_MIXTURE
from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest, SamplingParams
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class BenchJudging:
    """How bench responses are judged: like the rollouts that trained the model (the rule tolerances, the open
    judge's synonyms, the categories with `strict_format`), so the bench does not credit what training refused."""

    rule: RuleSettings = RuleSettings()
    reference: ReferenceSettings = ReferenceSettings()
    strict_format: frozenset[str] = frozenset()  # categories crediting only a marked final answer


def vocabularies(prompts: pl.DataFrame) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each category's objects (the open judge's vocabulary) and text answers (the text judge's candidates)."""
    return {
        category: (object_vocabulary(group["objects"]), text_answers(group))
        for (category,), group in prompts.group_by("category")
    }


def bench_verdict(
    prompt: dict, text: str, vocabulary: dict[str, tuple[frozenset[str], frozenset[str]]], judging: BenchJudging
) -> Verdict:
    """A response judged by rule against its prompt row."""
    objects, answers = vocabulary[prompt["category"]]
    return judge(
        prompt["answer_type"],
        text,
        prompt["answer"],
        prompt["objects"],
        prompt["choices"],
        judging.rule,
        vocabulary=objects,
        synonyms=judging.reference.synonyms,
        strict_format=prompt["category"] in judging.strict_format,
        answers=answers,
    )


def greedy_verdicts(
    engine: Engine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    max_new_tokens: int,
    progress: Progress | None = None,
    judging: BenchJudging = BenchJudging(),
) -> pl.DataFrame:
    """One greedy response per prompt with its score and correctness."""
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    completions = engine.generate(_requests(prompts, images), greedy, progress)
    return judged_greedy(prompts, [completion.text for (completion,) in completions], judging)


def judged_greedy(prompts: pl.DataFrame, responses: Sequence[str], judging: BenchJudging) -> pl.DataFrame:
    """Each prompt's greedy response (in prompt order) with its score and correctness."""
    rows, vocabulary = [], vocabularies(prompts)
    for prompt, response in zip(prompts.iter_rows(named=True), responses, strict=True):
        verdict = bench_verdict(prompt, response, vocabulary, judging)
        rows.append(
            {
                "prompt_id": prompt["prompt_id"],
                "category": prompt["category"],
                "response": response,
                "score": verdict.score,
                "correct": verdict.correct,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "prompt_id": pl.String,
            "category": pl.String,
            "response": pl.String,
            "score": pl.Float64,
            "correct": pl.Boolean,
        },
    )


def sampled_correct(prompts: pl.DataFrame, samples: Sequence[Sequence[str]], judging: BenchJudging) -> pl.DataFrame:
    """How many of each prompt's sampled responses (in prompt order) are fully correct: the input of unbiased pass@k."""
    rows, vocabulary = [], vocabularies(prompts)
    for prompt, texts in zip(prompts.iter_rows(named=True), samples, strict=True):
        correct = sum(bench_verdict(prompt, text, vocabulary, judging).correct for text in texts)
        rows.append({"prompt_id": prompt["prompt_id"], "category": prompt["category"], "n_correct": correct})
    return pl.DataFrame(rows, schema={"prompt_id": pl.String, "category": pl.String, "n_correct": pl.Int64})


def bench_answers(
    engine: Engine,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    settings: EvalSettings,
    seed: int,
    progress: Callable[[str], Progress | None],
) -> pl.DataFrame:
    """Each prompt's greedy response and `settings.samples_per_prompt` sampled ones (BENCHMARK_ANSWERS rows), with
    `progress("greedy")` and `progress("pass@k")` reporting each pass."""
    requests = _requests(prompts, images)
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=settings.max_new_tokens)
    sampling = SamplingParams(
        n=settings.samples_per_prompt,
        temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens,
        seed=seed,
    )
    responses = [completion.text for (completion,) in engine.generate(requests, greedy, progress("greedy"))]
    samples = [[s.text for s in group] for group in engine.generate(requests, sampling, progress("pass@k"))]
    answers = prompts.select("category", "prompt_id").with_columns(
        response=pl.Series(responses, dtype=pl.String), samples=pl.Series(samples, dtype=pl.List(pl.String))
    )
    return schemas.check(answers, schemas.BENCHMARK_ANSWERS, "benchmark_answers")


def _requests(prompts: pl.DataFrame, images: Sequence[tuple[Image.Image, ...]]) -> list[GenerationRequest]:
    return [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images, strict=True)]


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
        rows += [
            (category, model, f"pass@{k}", p, n, None, None) for k, p in enumerate(pass_at_k_curve(counts, samples), 1)
        ]
    return pl.DataFrame(rows, schema=schemas.BENCHMARK_SCORES, orient="row")


def bench_prompts(store: Store, categories: Sequence[str], split: str) -> pl.DataFrame:
    """A held-out split of each category's prompt table: `bench`, read only to report, or `dev`, where settings
    are chosen."""
    tables = [store.read_table(PROMPT_MIXTURE, c, schemas.PROMPTS) for c in categories]
    return pl.concat(tables).filter(pl.col("split") == split)


def bench_scores(
    prompts: pl.DataFrame, answers: dict[str, pl.DataFrame], settings: EvalSettings, judging: BenchJudging, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each named model's answers to the bench prompts judged: the BENCHMARK_SCORES rows (greedy accuracy, pass@k from
    `settings.samples_per_prompt` samples) and the greedy verdicts (with `model`) that paired deltas are computed from."""
    summaries, all_verdicts = [], []
    for name, model_answers in answers.items():
        ordered = prompts.select("category", "prompt_id").join(
            model_answers, on=["category", "prompt_id"], how="left", maintain_order="left"
        )  # row i answers prompt i
        if ordered["response"].null_count():
            raise ValueError(
                f"{name} has no answer to {ordered['response'].null_count()} of {prompts.height} bench prompts"
            )
        verdicts = judged_greedy(prompts, ordered["response"].to_list(), judging)
        sampled = sampled_correct(prompts, ordered["samples"].to_list(), judging)
        summaries.append(summarize(verdicts, sampled, settings.samples_per_prompt, name, seed))
        all_verdicts.append(verdicts.with_columns(model=pl.lit(name)))
    return schemas.check(pl.concat(summaries), schemas.BENCHMARK_SCORES, BENCHMARK_SCORES), pl.concat(all_verdicts)


def compare(scores: pl.DataFrame, candidate: str) -> pl.DataFrame:
    """Per category and metric: base and candidate (each with its CI) and the delta side by side."""
    wide = scores.pivot(on="model", index=["category", "metric"], values=["value", "ci_low", "ci_high"])
    return (
        wide.select(
            "category",
            "metric",
            *(
                pl.col(f"{column}_{model}").alias(model + suffix)
                for model in ("base", candidate)
                for column, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
            ),
        )
        .with_columns(delta=pl.col(candidate) - pl.col("base"))
        .sort("metric", "category")
    )
