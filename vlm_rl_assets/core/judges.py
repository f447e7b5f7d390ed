"""Rule judges: a score in [0, 1], a correctness flag and a short reason for each response.

Verifiable answers (number, choice, text, structured fields) are checked by rules; open scene
descriptions are scored CHAIR-style against the true object list (objects covered, objects
hallucinated), which is what the `reference` judge means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlm_rl_assets.core.world import COLOURS, SHAPES

ANSWER_LINE = re.compile(r"answer\s*[:：]\s*(.+)", re.IGNORECASE)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
LETTER = re.compile(r"\b([A-Z])\b")
PARENTHESIZED_LETTER = re.compile(r"\(([A-Z])\)")
OBJECT_MENTION = re.compile(rf"\b({'|'.join(COLOURS)})\s+({'|'.join(SHAPES)})s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    score: float
    correct: bool
    reason: str


def final_answer(response: str) -> str:
    """The text after the last 'Answer:' if there is one, else the whole response."""
    matches = ANSWER_LINE.findall(response)
    return matches[-1].strip() if matches else response.strip()


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length (1.0 for identical strings)."""
    if a == b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def judge_number(response: str, answer: str) -> Verdict:
    numbers = NUMBER.findall(final_answer(response).replace(",", ""))
    if not numbers:
        return Verdict(0.0, False, "no number found")
    ok = abs(float(numbers[-1]) - float(answer)) < 1e-6
    return Verdict(float(ok), ok, f"answered {numbers[-1]}, expected {answer}")


def judge_choice(response: str, answer: str) -> Verdict:
    # after 'Answer:' any lone capital counts; elsewhere only '(B)', since 'A' is also an article
    has_answer_line = bool(ANSWER_LINE.search(response))
    letters = (LETTER if has_answer_line else PARENTHESIZED_LETTER).findall(final_answer(response))
    if not letters:
        return Verdict(0.0, False, "no option letter found")
    ok = letters[-1] == answer.upper()
    return Verdict(float(ok), ok, f"chose {letters[-1]}, expected {answer}")


def judge_text(response: str, answer: str) -> Verdict:
    got, want = normalize(final_answer(response)), normalize(answer)
    similarity = edit_similarity(got, want)
    return Verdict(similarity, similarity == 1.0, f"edit similarity {similarity:.2f} to {want!r}")


def parse_fields(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        key, sep, value = part.partition(":")
        if sep:
            fields[normalize(key)] = normalize(value)
    return fields


def judge_structured(response: str, answer: str) -> Verdict:
    expected, got = parse_fields(answer), parse_fields(response)
    wrong = [key for key, value in expected.items() if got.get(key) != value]
    score = 1.0 - len(wrong) / len(expected)
    return Verdict(score, not wrong, f"wrong fields: {wrong}" if wrong else "all fields right")


def judge_scene(response: str, objects: list[str]) -> Verdict:
    """CHAIR-style: Jaccard overlap of mentioned and true objects (misses and hallucinations both cost)."""
    mentioned = {f"{c.lower()} {s.lower()}" for c, s in OBJECT_MENTION.findall(response)}
    truth = set(objects)
    covered, hallucinated = mentioned & truth, mentioned - truth
    score = len(covered) / len(mentioned | truth) if truth or mentioned else 1.0
    reason = f"covered {len(covered)}/{len(truth)}, hallucinated {sorted(hallucinated)}"
    return Verdict(score, score == 1.0, reason)


def judge(answer_type: str, response: str, answer: str, objects: list[str]) -> Verdict:
    if answer_type == "number":
        return judge_number(response, answer)
    if answer_type == "choice":
        return judge_choice(response, answer)
    if answer_type == "text":
        return judge_text(response, answer)
    if answer_type == "structured":
        return judge_structured(response, answer)
    if answer_type == "open":
        return judge_scene(response, objects)
    raise ValueError(f"no rule judge for answer type {answer_type!r}")
