"""What a response gives as its final answer, and when that answer is ambiguous.

The final answer is the text after an `Answer:` marker, or a `\\boxed{}`, or a stated answer's sentence ("The
answer is B.", "the correct option is (B)"; markdown bold taken off first); a response without any is read as a
whole (free text), unless its category has `strict_format`, where a response needs an `Answer:` or a box (open-r1's
rule: the answer must follow the anchor). A judge's verdict is RL's training signal, so nothing ambiguous is
credited (VLMEvalKit's rule: an option counts only when exactly one is named): final answers that disagree
with each other, or one answer naming several options, numbers or texts, are wrong whatever the ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from vlm_rl_assets.judging.contract import Verdict
from vlm_rl_assets.judging.normalize import strip_markdown

T = TypeVar("T")

ANSWER_MARKER = re.compile(r"\banswer\s*[:：]", re.IGNORECASE)
# "The answer is B", "the correct option is (B)", "So the final answer is 3" (as VLMEvalKit, verl and Qwen's MCQ
# extraction read them): a stated answer, which ends with its sentence
STATED = re.compile(
    r"\b(?:(?:the|my)\s+(?:(?:final|correct|right|best)\s+)?|(?:final|correct)\s+)(?:answer|option|choice)"
    r"\s+(?:is|would\s+be|should\s+be|will\s+be)\b\s*[:：]?",
    re.IGNORECASE,
)
ANY_MARKER = re.compile(f"(?P<instructed>{ANSWER_MARKER.pattern})|(?P<stated>{STATED.pattern})", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?](?!\d)")
BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
# "3 or 4", "either 3 or 4": a hedge names several answers
HEDGE = re.compile(r"\b(?:or|either)\b", re.IGNORECASE)
# ... and so does a list ("red, blue", "red and blue", "red/blue": a slash between words, not 1/2)
SEVERAL = re.compile(rf"{HEDGE.pattern}|[,;]|\band\b|(?<=[^\W\d_])\s*/\s*(?=[^\W\d_])", re.IGNORECASE)
# a word that negates what follows it within a few words: "not a circle", "isn't (A)", "rather than 3"
NEGATION = re.compile(
    r"(?:\bnot|n[’']t|\bno|\bnever|\bnor|\bneither|\bwithout|\brather\s+than|\binstead\s+of)"
    r"\s+(?:(?:a|an|the|option|answer|choice)\s+)*$",
    re.IGNORECASE,
)
FORMAT = Verdict(0.0, False, "format: no final answer after 'Answer:' or in \\boxed{}, which this category requires")


def marked_answers(response: str, stated: bool = False) -> list[str]:
    """The text of every `Answer:` marker (to the end of its line or the next marker, boxes taken out) and of
    every `\\boxed{}`: "Answer: $\\boxed{3}$" is one final answer, "Answer: 3 \\boxed{4}" two. With `stated`, also
    each stated answer to the end of its sentence ("The answer is B. The answer is C." is two)."""
    response = strip_markdown(response)
    boxed = [match.strip() for match in BOXED.findall(response)]
    markers = list((ANY_MARKER if stated else ANSWER_MARKER).finditer(response))
    lines = []
    for marker, following in zip(markers, markers[1:] + [None]):
        end = following.start() if following else len(response)
        text = BOXED.sub("", response[marker.end() : end].split("\n", 1)[0])
        if stated and marker["stated"]:
            text = SENTENCE_END.split(text, 1)[0]
        text = text.strip(" \t.")
        if text.strip(" $"):
            lines.append(text)
    return lines + boxed


def has_final_answer(response: str) -> bool:
    """In the instructed form of the `cot` template: an `Answer:` line or a `\\boxed{}`."""
    return bool(marked_answers(response))


def format_compliance(responses: Iterable[str]) -> float:
    """The share of responses with a marked final answer (the `cot` template's instructed form)."""
    flags = [has_final_answer(response) for response in responses]
    return sum(flags) / len(flags) if flags else 0.0


def answer_texts(response: str, strict_format: bool) -> list[str] | None:
    """The final answers to judge: the marked and stated ones, else the whole response (markdown bold taken off);
    None when `strict_format` requires an `Answer:` or a box and there is none."""
    if strict_format and not marked_answers(response):
        return None
    return marked_answers(response, stated=True) or [strip_markdown(response).strip()]


def negated(text: str, start: int) -> bool:
    """Whether the mention starting at `start` follows a negation ("a square, not a circle")."""
    return bool(NEGATION.search(text[max(0, start - 40) : start]))


def names_several(text: str, ground_truth: str, pattern: re.Pattern[str] = SEVERAL) -> bool:
    """Whether `text` offers alternatives or a list ("red or blue", "either 3 or 4", "red, blue") where the
    ground truth has none."""
    return bool(pattern.search(text)) and not pattern.search(ground_truth)


def distinct(items: Sequence[T], same: Callable[[T, T], bool]) -> list[T]:
    """The first of each group of items `same` calls equal, in order."""
    kept: list[T] = []
    for item in items:
        if not any(same(item, other) for other in kept):
            kept.append(item)
    return kept


def ambiguous(detail: str) -> Verdict:
    return Verdict(0.0, False, f"ambiguous: {detail}")
