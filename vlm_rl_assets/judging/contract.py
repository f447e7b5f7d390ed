"""The judge contract every scoring path goes through: items in, one verdict or failure per item out.

Kinds: `rule` and `reference` (the rule judges of `rules.py`, by answer type; `reference` names the
CHAIR-style scene judge of `open` answers), `vlm` (`vlm_judge.py`, an OpenAI-compatible endpoint)
and `reward_model` (`reward_judge.py`, a sequence-classification model). A judge returns a
`JudgeFailure` for an item it could not score, so the caller quarantines it instead of scoring it 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class JudgeFailure(Exception):
    """A response the judge could not score (after any retries). Its row is quarantined with
    `reason` ("code: detail"), never given a score, so a broken judge cannot pass for a wrong answer."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail

    @property
    def reason(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Verdict:
    score: float
    correct: bool
    reason: str


@dataclass(frozen=True)
class JudgeItem:
    """One rollout with its prompt's ground truth: everything any judge may look at."""

    key: str  # "<prompt_id>/<sample_idx>", the quarantine key
    group: str  # the prompt id: items of one group are ranked against each other
    prompt_text: str
    response: str
    answer_type: str
    answer: str
    reference: str
    choices: Sequence[str] = ()
    objects: Sequence[str] = ()
    images: Sequence[str] = ()  # store URIs
    vocabulary: frozenset[str] = frozenset()  # every object of the category's prompts: the open judge's words
    answers: frozenset[str] = frozenset()  # every text answer of the category's prompts: the text judge's candidates


@dataclass(frozen=True)
class JudgeRun:
    outcomes: list[Verdict | JudgeFailure]  # one per item, in order
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. the vlm judge's consistency

    def failures(self, items: Sequence[JudgeItem]) -> list[tuple[str, str]]:
        """(item key, reason) for every item the judge failed on: the quarantine rows."""
        return [(item.key, o.reason) for item, o in zip(items, self.outcomes) if isinstance(o, JudgeFailure)]

    def failure_counts(self) -> dict[str, int]:
        """Failures by code (timeout, malformed JSON, HTTP 500, ...)."""
        return dict(sorted(Counter(o.code for o in self.outcomes if isinstance(o, JudgeFailure)).items()))


class RolloutJudge(Protocol):
    name: str
    # True when a verdict is a function of the item's answer_type, response, answer, choices and objects (with the
    # judge's settings and the category's vocabulary) alone: then each distinct input is judged once, not per row
    pure: bool

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun: ...
