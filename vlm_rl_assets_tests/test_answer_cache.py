"""A checkpoint's bench answers are generated once per category and setting, and judged again from the store."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from PIL import Image
from polars.testing import assert_frame_equal

from vlm_rl_assets.evaluation.answer_cache import BenchModel, models_answers
from vlm_rl_assets.evaluation.benchmarks import BenchJudging, bench_scores
from vlm_rl_assets.evaluation.settings import EvalSettings
from vlm_rl_assets.rollouts.engine import Completion, Engine
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table


class CountingEngine(Engine):
    """Answers each prompt with its text and the call number, and records which prompts each call asked."""

    name = "counting"

    def __init__(self, asked: list[list[str]]) -> None:
        self.asked = asked

    def generate(self, requests, params, progress=None):
        self.asked.append([r.prompt_text for r in requests])
        call = len(self.asked)
        return [[Completion(f"Answer: {call}", 2, "stop")] * params.n for _ in requests]

    def prompt_token_ids(self, requests):
        return [[1] for _ in requests]

    def close(self) -> None:
        pass


PROMPTS = pl.concat(
    [
        prompt_table({"c1": ("number", "1"), "c2": ("number", "3")}, category="count"),
        prompt_table({"s1": ("number", "1")}, category="shape"),
    ]
)
IMAGES = [(Image.new("RGB", (56, 56)),)] * PROMPTS.height
SETTINGS = EvalSettings(samples_per_prompt=2)
BASE = BenchModel("base", Path("base"), "base-id")


def answer(store, prompts=PROMPTS, settings=SETTINGS, model=BASE):
    asked: list[list[str]] = []
    images = IMAGES[: prompts.height]
    got = models_answers(
        store, [model], prompts, images, lambda _: CountingEngine(asked), "hf", settings, 0, lambda s: None
    )
    return got[model.name], asked


def test_a_second_benchmark_of_the_same_checkpoint_generates_nothing_and_scores_the_same(tmp_path):
    store = LocalStore(tmp_path)
    first, asked = answer(store)
    assert asked == [list(PROMPTS["prompt_text"])] * 2  # greedy, then the pass@k samples, all prompts in one call each
    again, asked_again = answer(store)
    assert asked_again == []
    assert_frame_equal(again.sort("prompt_id"), first.sort("prompt_id"))
    scores = [bench_scores(PROMPTS, {"base": a}, SETTINGS, BenchJudging(), seed=0)[0] for a in (first, again)]
    assert_frame_equal(*scores)
    assert scores[0].filter(pl.col("metric") == "accuracy")["value"].to_list() == [
        0.5,
        1.0,
    ]  # "Answer: 1" is right for c1, s1


def test_only_the_categories_without_kept_answers_are_asked(tmp_path):
    store = LocalStore(tmp_path)
    answer(store, prompts=PROMPTS.filter(pl.col("category") == "count"))
    both, asked = answer(store)
    assert asked == [["question s1"]] * 2
    assert both.height == PROMPTS.height and set(both["category"]) == {"count", "shape"}


def test_another_checkpoint_setting_or_prompt_text_asks_again(tmp_path):
    store = LocalStore(tmp_path)
    answer(store)
    changed = [
        {"model": BenchModel("base", Path("base"), "retrained-id")},
        {"settings": EvalSettings(samples_per_prompt=3)},
        {"settings": EvalSettings(samples_per_prompt=2, max_new_tokens=20)},
        {"prompts": PROMPTS.with_columns(prompt_text=pl.col("prompt_text") + " Think step by step.")},
    ]
    for change in changed:
        _, asked = answer(store, **change)
        assert len(asked) == 2, change


def test_answers_are_judged_against_their_own_prompts_in_any_row_order():
    answers = pl.DataFrame(
        {
            "category": ["count"] * 2,
            "prompt_id": ["c1", "c2"],
            "response": ["Answer: 1", "Answer: 1"],
            "samples": [["Answer: 1", "Answer: 1"], ["Answer: 3", "Answer: 1"]],
        },
    )
    prompts = PROMPTS.filter(pl.col("category") == "count")
    verdicts = [
        bench_scores(prompts, {"base": frame}, SETTINGS, BenchJudging(), seed=0)[1].select("prompt_id", "correct")
        for frame in (answers, answers.reverse())
    ]
    assert verdicts[0].rows() == verdicts[1].rows() == [("c1", True), ("c2", False)]  # c2's answer is 3
