"""A category's judge as a TRL reward function: completions in, through the judge contract, a score or None out.

GRPOTrainer calls a reward function with the batch's `prompts`, `completions` and every dataset column (here
`prompt_id`), one entry per completion, and turns a None into NaN: a completion no reward function scored is left out
of its group's mean and std and gets advantage 0 (TRL 1.16, `_generate_and_score_completions`). So a `JudgeFailure`
becomes None, never 0: a broken judge cannot pass for a wrong answer, as in filtered_rollouts. Each failure is kept
with its reason for the quarantine. In a mixture each category has its own reward function, which leaves the other
categories' completions to theirs (None), so TRL logs `rewards/<category>/mean` and `/std` for each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from vlm_rl_assets import metering
from vlm_rl_assets.judging.contract import JudgeFailure, RolloutJudge
from vlm_rl_assets.judging.rules import text_answers
from vlm_rl_assets.judging.scene import object_vocabulary
from vlm_rl_assets.judging.scoring import judge_item


class JudgeReward:
    """Scores the completions of one category's prompts with its judge; `failures` holds (key, reason) of every
    completion the judge could not score, keyed `<prompt_id>/<call>/<index in the batch>`. `judge_settings`
    (JSON) says what decides the judge's verdicts beyond the ground truths, for `identity`."""

    def __init__(self, category: str, judge: RolloutJudge, prompts: pl.DataFrame, judge_settings: Any = None) -> None:
        self.__name__ = category  # TRL logs rewards/<__name__>/mean and /std
        self.judge, self.judge_settings = judge, judge_settings
        self.truth = {row["prompt_id"]: row for row in prompts.iter_rows(named=True)}
        # as filtered_rollouts judges: the whole table's objects and text answers
        self.vocabulary, self.answers = object_vocabulary(prompts["objects"]), text_answers(prompts)
        self.failures: list[tuple[str, str]] = []
        self.judged = 0  # completions given to the judge
        self.calls = 0

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        prompt_id: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        mine = [(i, pid) for i, pid in enumerate(prompt_id) if pid in self.truth]  # the rest: other categories'
        if completion_ids is not None:  # GRPO samples inside TRL, not through an engine: its tokens are counted here
            metering.count(metering.GENERATED_TOKENS, sum(len(completion_ids[i]) for i, _ in mine))
        items = [
            judge_item(
                self.truth[pid],
                f"{pid}/{self.calls}/{i}",
                completion_text(completions[i]),
                self.vocabulary,
                self.answers,
            )
            for i, pid in mine
        ]
        outcomes = self.judge.judge(items).outcomes if items else []
        rewards: list[float | None] = [None] * len(completions)
        for (i, _), item, outcome in zip(mine, items, outcomes):
            if isinstance(outcome, JudgeFailure):
                self.failures.append((item.key, outcome.reason))
            else:
                rewards[i] = outcome.score
        self.calls += 1
        self.judged += len(items)
        if log_metric is not None and items:
            failed = sum(isinstance(outcome, JudgeFailure) for outcome in outcomes)
            log_metric(f"judge_failures/{self.__name__}", failed / len(items))  # in the log history, per step
        return rewards

    def identity(self) -> dict[str, Any]:
        """What decides this reward's scores (JSON), a part of a GRPO run's work-folder key: the category, the judge
        and its settings, the ground truths."""
        truth = [self.truth[pid] for pid in sorted(self.truth)]
        return {"category": self.__name__, "judge": self.judge.name, "settings": self.judge_settings, "truth": truth}

    def failure_counts(self) -> dict[str, int]:
        """Failures by code (timeout, malformed JSON, ...)."""
        return dict(sorted(Counter(reason.split(":")[0] for _, reason in self.failures).items()))


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or (conversational prompts) one assistant message whose content is a
    string or a list of parts."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")
