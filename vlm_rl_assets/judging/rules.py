"""Rule judges: a score in [0, 1], a correctness flag and a short reason for each response.

Verifiable answers (number, choice, text, structured fields, math, OCR text) are checked by rules;
open scene descriptions are scored CHAIR-style against the true object list (objects covered,
objects hallucinated), which is what the `reference` judge means. A judge that cannot judge (a
ground truth it cannot read, a timeout) raises `JudgeFailure`: the row is quarantined, never scored 0.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun, Verdict
from vlm_rl_assets.judging.settings import RuleSettings
from vlm_rl_assets.prompts.prompt_table import ANSWER_TYPES
from vlm_rl_assets.prompts.world import COLOURS, SHAPES

ANSWER_LINE = re.compile(r"answer\s*[:：]\s*(.+)", re.IGNORECASE)
BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
LETTER = re.compile(r"\b([A-Z])\b")
PARENTHESIZED_LETTER = re.compile(r"\(([A-Z])\)")
LONE_LETTER = re.compile(r"[A-Z][).:]?")  # a whole answer of one letter ("B", "B.") is an option, not an article
OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][).:]\s+")  # "(A) circle", "A. circle": the option text is "circle"
OBJECT_MENTION = re.compile(rf"\b({'|'.join(COLOURS)})\s+({'|'.join(SHAPES)})s?\b", re.IGNORECASE)

# A number with optional thousands groups ("1,000", "1 000"), decimals, exponent, a currency sign
# before it and a unit word or % after it.
QUANTITY = re.compile(
    r"(?P<currency>[$€£¥])?\s*"
    r"(?P<number>[-+]?(?:\d{1,3}(?:(?:,\d{3})+|(?:[ \u00a0\u202f\u2009]\d{3})+)(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|[-+]?\.\d+)"
    r"(?:\s*(?P<unit>%|°|[^\W\d_]+\b))?"
)
# unit -> (dimension, factor to the dimension's base unit), to convert between units of one dimension.
UNITS: dict[str, tuple[str, float]] = {
    "%": ("percent", 1.0),
    "°": ("angle", 1.0),
    "mm": ("length", 1e-3),
    "cm": ("length", 1e-2),
    "m": ("length", 1.0),
    "km": ("length", 1e3),
    "inch": ("length", 0.0254),
    "ft": ("length", 0.3048),
    "mg": ("mass", 1e-6),
    "g": ("mass", 1e-3),
    "kg": ("mass", 1.0),
    "lb": ("mass", 0.45359237),
    "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "ml": ("volume", 1e-3),
    "l": ("volume", 1.0),
    "usd": ("usd", 1.0),
    "eur": ("eur", 1.0),
    "gbp": ("gbp", 1.0),
    "jpy": ("jpy", 1.0),
}
UNIT_ALIASES = {
    "percent": "%", "pct": "%", "degree": "°", "degrees": "°", "deg": "°",
    "millimeter": "mm", "centimeter": "cm", "meter": "m", "metre": "m", "kilometer": "km", "inches": "inch",
    "foot": "ft", "feet": "ft", "gram": "g", "kilogram": "kg", "kilo": "kg", "lbs": "lb", "pound": "lb",
    "second": "s", "sec": "s", "minute": "min", "hour": "h", "hr": "h", "liter": "l", "litre": "l",
    "milliliter": "ml", "dollar": "usd", "euro": "eur", "$": "usd", "€": "eur", "£": "gbp", "¥": "jpy",
}
SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9}  # "$5 million" is 5e6 dollars
MATH_TIMEOUT_S = 5  # math-verify's own timeout; it uses SIGALRM, so it only applies on the main thread


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str  # a key of UNITS, or "" when absent or unknown ("3 apples")
    text: str


def final_answer(response: str) -> str:
    """The last `\\boxed{...}`, else the text after the last 'Answer:', else the whole response."""
    boxed = BOXED.findall(response)
    if boxed:
        return boxed[-1].strip()
    matches = ANSWER_LINE.findall(response)
    return matches[-1].strip() if matches else response.strip()


def has_final_answer(response: str) -> bool:
    return bool(BOXED.search(response) or ANSWER_LINE.search(response))


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length (1.0 for identical strings)."""
    return Levenshtein.normalized_similarity(a, b)


def canonical_unit(word: str | None) -> str:
    if not word:
        return ""
    for candidate in (word.lower(), word.lower().removesuffix("s")):  # "cm", "cms", "dollars"
        unit = UNIT_ALIASES.get(candidate, candidate)
        if unit in UNITS:
            return unit
    return ""


def quantities(text: str) -> list[Quantity]:
    """Every number in `text` with its unit; thousands separators dropped, unknown unit words ignored."""
    text = text.replace("\u2212", "-")  # the typographic minus sign
    found = []
    for match in QUANTITY.finditer(text):
        value = float(re.sub(r"[,\s\u00a0\u202f\u2009]", "", match["number"]))
        scale = SCALES.get((match["unit"] or "").lower())
        unit = canonical_unit(match["currency"])
        if not scale:
            unit = canonical_unit(match["unit"]) or unit
        found.append(Quantity(value * (scale or 1.0), unit, match[0].strip()))
    return found


def same_quantity(got: Quantity, want: Quantity, settings: RuleSettings) -> bool:
    """Equal within tolerance, in the ground truth's unit when both sides name a unit of one dimension;
    a unit on one side only is ignored, except that a percentage also matches its fraction (50% = 0.5)."""

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=settings.rel_tol, abs_tol=settings.abs_tol)

    if got.unit and want.unit:
        (got_dim, got_factor), (want_dim, want_factor) = UNITS[got.unit], UNITS[want.unit]
        return got_dim == want_dim and close(got.value * got_factor / want_factor, want.value)
    if close(got.value, want.value):
        return True
    if got.unit == "%":
        return close(got.value / 100, want.value)
    return want.unit == "%" and close(got.value, want.value / 100)


def judge_number(response: str, answer: str, settings: RuleSettings = RuleSettings()) -> Verdict:
    expected = quantities(answer)
    if len(expected) != 1:
        raise JudgeFailure("answer_not_a_number", f"ground truth {answer!r} holds {len(expected)} numbers, not one")
    found = quantities(final_answer(response))
    if not found:
        return Verdict(0.0, False, "no number found")
    # after 'Answer:' the first number is the answer ("Answer: 3 (in 2 rows)"); in free text, the last
    got = found[0] if has_final_answer(response) else found[-1]
    ok = same_quantity(got, expected[0], settings)
    return Verdict(float(ok), ok, f"answered {got.text}, expected {answer}")


def option_texts(choices: Sequence[str]) -> list[str]:
    return [normalize(OPTION_PREFIX.sub("", choice)) for choice in choices]


def chosen_by_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the option whose text is mentioned last (the longer one where two end together)."""
    text = f" {normalize(text)} "
    best: tuple[int, int, str] | None = None
    for letter, option in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", option_texts(choices)):
        if not option:
            continue
        for match in re.finditer(rf"(?<= ){re.escape(option)}(?= )", text):
            candidate = (match.end(), len(option), letter)
            best = max(best, candidate) if best else candidate
    return best[2] if best else None


def judge_choice(response: str, answer: str, choices: Sequence[str] = ()) -> Verdict:
    """The option chosen by '(B)', else by its text (when the choices are known), else by a lone
    letter after 'Answer:' or as the whole response (a short-answer template's 'B'); 'A' in a sentence
    is an article."""
    final = final_answer(response)
    letters = PARENTHESIZED_LETTER.findall(final)
    by_text = chosen_by_text(final, choices) if choices and not letters else None
    if not letters and not by_text and (has_final_answer(response) or LONE_LETTER.fullmatch(final)):
        valid = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)] if choices else None
        letters = [letter for letter in LETTER.findall(final) if valid is None or letter in valid]
    chosen = letters[-1] if letters else by_text
    if chosen is None:
        return Verdict(0.0, False, "no option found")
    ok = chosen == answer.strip().strip("()").upper()
    return Verdict(float(ok), ok, f"chose {chosen}, expected {answer}")


def judge_text(response: str, answer: str) -> Verdict:
    got, want = normalize(final_answer(response)), normalize(answer)
    similarity = edit_similarity(got, want)
    return Verdict(similarity, similarity == 1.0, f"edit similarity {similarity:.2f} to {want!r}")


def normalize_ocr(text: str) -> str:
    """Case, Unicode compatibility forms and runs of whitespace do not count; punctuation does."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def judge_ocr(response: str, answer: str, settings: RuleSettings = RuleSettings()) -> Verdict:
    """Normalized edit similarity of the transcript (the text after 'Answer:' if any) to the ground truth."""
    similarity = edit_similarity(normalize_ocr(final_answer(response)), normalize_ocr(answer))
    ok = similarity >= settings.ocr_correct_at
    return Verdict(similarity, ok, f"edit similarity {similarity:.2f} (correct at {settings.ocr_correct_at})")


def judge_math(response: str, answer: str) -> Verdict:
    """Symbolic equivalence by `math-verify` (2(x+1) = 2x+2, 1/2 = 0.5, \\{1,2\\} = \\{2,1\\})."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    limit = MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    gold_text = answer if "$" in answer or "\\boxed" in answer else f"${answer}$"
    try:
        gold = parse(gold_text, fallback_mode="no_fallback", parsing_timeout=limit)
        if not gold:
            raise JudgeFailure(
                "math_answer_unparseable", f"math-verify cannot read the ground truth {answer!r}; write it as LaTeX"
            )
        target = response if BOXED.search(response) else final_answer(response)
        try:
            got = parse(target, parsing_timeout=limit, raise_on_error=True)
        except Exception:  # an unparseable response is a wrong answer, not a judge failure
            got = []
        if not got:
            return Verdict(0.0, False, "no math expression found")
        try:
            ok = verify(gold, got, timeout_seconds=limit, raise_on_error=True)
        except Exception as err:  # sympy cannot compare what the response wrote: not equivalent
            return Verdict(0.0, False, f"answered {got[-1]}, not comparable to {answer}: {type(err).__name__}")
    except TimeoutException as err:
        raise JudgeFailure("math_timeout", f"math-verify gave up after {limit}s: {err}") from err
    return Verdict(float(ok), ok, f"answered {got[-1]}, expected {answer}")


def parse_fields(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        key, sep, value = part.partition(":")
        if sep:
            fields[normalize(key)] = normalize(value)
    return fields


def judge_structured(response: str, answer: str) -> Verdict:
    expected, got = parse_fields(answer), parse_fields(response)
    if not expected:
        raise JudgeFailure("answer_not_structured", f"ground truth {answer!r} has no 'key: value' fields")
    wrong = [key for key, value in expected.items() if got.get(key) != value]
    score = 1.0 - len(wrong) / len(expected)
    return Verdict(score, not wrong, f"wrong fields: {wrong}" if wrong else "all fields right")


def judge_scene(response: str, objects: Sequence[str]) -> Verdict:
    """CHAIR-style: Jaccard overlap of mentioned and true objects (misses and hallucinations both cost)."""
    mentioned = {f"{c.lower()} {s.lower()}" for c, s in OBJECT_MENTION.findall(response)}
    truth = set(objects)
    covered, hallucinated = mentioned & truth, mentioned - truth
    score = len(covered) / len(mentioned | truth) if truth or mentioned else 1.0
    reason = f"covered {len(covered)}/{len(truth)}, hallucinated {sorted(hallucinated)}"
    return Verdict(score, score == 1.0, reason)



def judge(
    answer_type: str,
    response: str,
    answer: str,
    objects: Sequence[str],
    choices: Sequence[str] = (),
    settings: RuleSettings = RuleSettings(),
) -> Verdict:
    """The rule verdict for one response; raises `JudgeFailure` when the ground truth cannot be judged."""
    if answer_type == "number":
        return judge_number(response, answer, settings)
    if answer_type == "choice":
        return judge_choice(response, answer, choices)
    if answer_type == "text":
        return judge_text(response, answer)
    if answer_type == "structured":
        return judge_structured(response, answer)
    if answer_type == "open":
        return judge_scene(response, objects)
    if answer_type == "math":
        return judge_math(response, answer)
    if answer_type == "ocr":
        return judge_ocr(response, answer, settings)
    raise ValueError(f"no rule judge for answer type {answer_type!r}; use one of {ANSWER_TYPES}")


class RuleJudge:
    """The rule judges by answer type: fast, local, run on every rollout of verifiable categories."""

    def __init__(self, settings: RuleSettings = RuleSettings(), name: str = "rule") -> None:
        self.settings, self.name = settings, name

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun:
        return JudgeRun([self._one(item) for item in items])

    def _one(self, item: JudgeItem) -> Verdict | JudgeFailure:
        try:
            return judge(item.answer_type, item.response, item.answer, item.objects, item.choices, self.settings)
        except JudgeFailure as failure:
            return failure
