"""Rule judges: a score in [0, 1], a correctness flag and a short reason for each response.

Verifiable answers (number, choice, text, structured fields, math, OCR text) are checked by rules on the
final answer (`answers.py`: the text after 'Answer:', in \\boxed{} or after "The answer is", else the whole
response), read through one normalization (`normalize.py`, VQAv2's answer processor: "Three" is 3, "The colour is
Dark-Red." is "colour is dark red"), and a final answer that names several options, numbers or texts is wrong
("ambiguous: ..."), whatever the ground truth;
open scene descriptions are scored CHAIR-style against the true object list (`scene.py`), which is what the
`reference` judge means. A judge that cannot judge (a ground truth it cannot read, a timeout) raises
`JudgeFailure`: the row is quarantined, never scored 0.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import polars as pl
from rapidfuzz.distance import Levenshtein

from vlm_rl_assets.judging.answers import (
    FORMAT,
    HEDGE,
    ambiguous,
    answer_texts,
    distinct,
    marked_answers,
    names_several,
    negated,
)
from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun, Verdict
from vlm_rl_assets.judging.normalize import normalize_answer, number_words_to_digits, strip_markdown
from vlm_rl_assets.judging.scene import judge_scene
from vlm_rl_assets.judging.settings import ReferenceSettings, RuleSettings
from vlm_rl_assets.prompts.prompt_table import ANSWER_TYPES, LETTERS

EXPLICIT_LETTER = re.compile(r"\(([A-Z])\)|\b(?i:option|choice)\s+\(?([A-Z])\)?(?![\w'’])")  # "(B)", "option B"
# a letter joined to an explicit one by a hedge or a list ("(A) or B", "option A, B"): named as explicitly
CHAINED_LETTER = re.compile(r"\s*(?:,|/|\b(?:or|and|nor)\b)\s*(?:(?i:option|choice)\s+)?\(?([A-Z])\)?(?![\w'’])")
BARE_LETTER = re.compile(r"(?<![\w'’(])([A-Z])(?:[).:](?!\w)|(?![\w'’]))")
ARTICLE_BEFORE = re.compile(r"\s+(?!(?:or|and|nor|then|vs)\b)[a-z]")  # "A square": an article; "A or B": a letter
LONE_LETTER = re.compile(r"(?:(?i:option|choice)\s+)?\(?[A-Z][).:]?")  # a whole response "B", "B.", "Option B"
OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][).:]\s+")  # "(A) circle", "A. circle": the option text is "circle"
# numbers listed side by side ("2, 3", "1 2 3") in a math answer, which math-verify would read as the last
NUMBER_LIST = re.compile(r"(?<![\d.,])\d+(?:\.\d+)?(?![.,]?\d)(?:\s*[,;]\s*|\s+)(?:and\s+|or\s+)?[-+]?\d")
LATEX = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[a-zA-Z]+")
# "The car is red.", "It's dark red", "It looks like a circle": a copula, the answer after the last one
COPULA = re.compile(
    r"(?:\b(?:is|are|was|were|looks|appears|seems)|(?<=\w)'(?:s|re))\b(?:\s+(?:to\s+be|like|colou?red))?"
)
FILLER = re.compile(r"\s+(?:in\s+colou?r|in\s+(?:this\s+)?(?:image|picture|photo))$")  # "dark red in colour"
SENTENCE_BREAK = re.compile(r"[.!?](?!\d)\s+\S")
GROUPED = re.compile(r"\\?\{[^{}]*\\?\}|\([^()]*\)|\[[^\[\]]*\]")  # a set, a point, an interval: one result

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
    "percent": "%",
    "pct": "%",
    "degree": "°",
    "degrees": "°",
    "deg": "°",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "metre": "m",
    "kilometer": "km",
    "inches": "inch",
    "foot": "ft",
    "feet": "ft",
    "gram": "g",
    "kilogram": "kg",
    "kilo": "kg",
    "lbs": "lb",
    "pound": "lb",
    "second": "s",
    "sec": "s",
    "minute": "min",
    "hour": "h",
    "hr": "h",
    "liter": "l",
    "litre": "l",
    "milliliter": "ml",
    "dollar": "usd",
    "euro": "eur",
    "$": "usd",
    "€": "eur",
    "£": "gbp",
    "¥": "jpy",
}
NO_QUANTIFIER = re.compile(r"\bno(?=\s+(?!one\b)[^\W\d_])", re.IGNORECASE)  # "no cats": zero, for numbers only
SCALES = {"dozen": 12.0, "thousand": 1e3, "million": 1e6, "billion": 1e9}  # "$5 million" is 5e6 dollars
MATH_TIMEOUT_S = 5  # math-verify's own timeout; it uses SIGALRM, so it only applies on the main thread


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str  # a key of UNITS, or "" when absent or unknown ("3 apples")
    text: str


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
    """Every number in `text`, number words too ("three", "a dozen"), with its unit; thousands separators dropped,
    unknown unit words ignored."""
    text = number_words_to_digits(text.replace("\u2212", "-"))  # and the typographic minus sign
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


def hedged_number(text: str) -> bool:
    """Whether `text` offers numbers as alternatives, even equal ones ("three or 3", "either 3 or 3")."""
    return bool(HEDGE.search(text)) and len(quantities(text)) > 1


def judge_number(
    response: str, answer: str, settings: RuleSettings = RuleSettings(), strict_format: bool = False
) -> Verdict:
    """The one number the final answer names, in digits or words ("Answer: 3", "There are three cats.", "There are
    no cats." for 0); free text naming several numbers ("I see 2 rows, so 3 shapes", "3 (two rows)"), numbers
    offered as alternatives ("three or 3") and final answers that disagree are ambiguous."""
    expected = quantities(answer)
    if len(expected) != 1:
        raise JudgeFailure("answer_not_a_number", f"ground truth {answer!r} holds {len(expected)} numbers, not one")
    texts = answer_texts(response, strict_format)
    if texts is None:
        return FORMAT
    texts = [NO_QUANTIFIER.sub("0", text) for text in texts]
    found = distinct([q for text in texts for q in quantities(text)], lambda a, b: same_quantity(a, b, settings))
    if not found:
        return Verdict(0.0, False, "no number found")
    if len(found) > 1:
        return ambiguous(f"names {len(found)} numbers: {', '.join(q.text for q in found)}")
    if any(hedged_number(text) for text in texts):
        return ambiguous(f"offers numbers as alternatives: {texts[0]!r}")
    ok = same_quantity(found[0], expected[0], settings)
    return Verdict(float(ok), ok, f"answered {found[0].text}, expected {answer}")


def option_texts(choices: Sequence[str]) -> list[str]:
    return [normalize_answer(OPTION_PREFIX.sub("", choice)) for choice in choices]


def text_mentions(text: str, choices: Sequence[str]) -> list[tuple[str, int, int]]:
    """(letter, start, end) of each option whose text `text` names, articles and punctuation aside ("the top left"
    names "top-left"); a name inside a longer option's ("square" in "light blue square") is that longer option's."""
    spans = []
    for letter, option in zip(LETTERS, option_texts(choices)):
        if option:
            words = r"(?:\W+(?:a|an|the)\b)*\W+".join(map(re.escape, option.split()))
            spans += [(letter, m.start(), m.end()) for m in re.finditer(rf"(?<!\w){words}(?!\w)", text, re.IGNORECASE)]
    return [s for s in spans if not any(o != s and o[1] <= s[1] and s[2] <= o[2] for o in spans)]


def letter_mentions(text: str, final: bool) -> list[tuple[str, int]]:
    """(letter, start) of each option letter: "(B)", "option B" and letters listed with them ("(A) or B") anywhere;
    in a final answer also "B.", "B)" and a bare "B", but not a bare "A" or "I" before a word (an article or a
    pronoun: "A square", "I think B"), unless that word joins it to another option ("A or B", "A and C": a hedge,
    never an article)."""
    mentions = []
    for m in EXPLICIT_LETTER.finditer(text):
        mentions.append((m[1] or m[2], m.start()))
        end = m.end()
        while (chained := CHAINED_LETTER.match(text, end)) and not (
            chained[1] in "AI" and ARTICLE_BEFORE.match(text[chained.end() :])
        ):
            mentions.append((chained[1], chained.start(1)))
            end = chained.end()
    if final:
        for m in BARE_LETTER.finditer(text):
            bare = m[0] == m[1]
            if not (bare and m[1] in "AI" and ARTICLE_BEFORE.match(text[m.end() :])):
                mentions.append((m[1], m.start()))
    return mentions


def reads_as_final(response: str) -> bool:
    """Whether bare letters count as options: after 'Answer:' or "The answer is", or as the whole response (a short
    answer's 'B', '**B**', 'Option B.')."""
    return bool(marked_answers(response, stated=True)) or bool(LONE_LETTER.fullmatch(strip_markdown(response).strip()))


def named_options(texts: Sequence[str], choices: Sequence[str], final: bool) -> dict[str, bool]:
    """Each option the texts name, by letter or by its text (number words as digits), mapped to whether it is named
    without a negation somewhere; bare letters count only when `final`."""
    valid = LETTERS[: len(choices)] if choices else LETTERS
    named: dict[str, bool] = {}
    for text in map(number_words_to_digits, texts):
        words = text_mentions(text, choices)
        letters = [(letter, start) for letter, start in letter_mentions(text, final) if letter in valid]
        letters = [(lt, start) for lt, start in letters if not any(w[1] <= start < w[2] for w in words)]
        for letter, start in letters + [(letter, start) for letter, start, _ in words]:
            named[letter] = named.get(letter, False) or not negated(text, start)
    return named


def judge_choice(response: str, answer: str, choices: Sequence[str] = (), strict_format: bool = False) -> Verdict:
    """The one option the final answer names, by letter or by its text (VLMEvalKit's can_infer_option and
    can_infer_text: exactly one). Bare letters count after 'Answer:' or as the whole response (a short-answer
    template's 'B'); in free text only "(B)" and option texts do. Naming a second option, even negated ("a
    square, not a circle"), is ambiguous; an option that is only negated is not chosen."""
    texts = answer_texts(response, strict_format)
    if texts is None:
        return FORMAT
    named = named_options(texts, choices, reads_as_final(response))
    if len(named) > 1:
        return ambiguous(f"names options {', '.join(sorted(named))}")
    chosen = [letter for letter, affirmed in named.items() if affirmed]
    if not chosen:
        return Verdict(0.0, False, f"no option found{' (only a negated one)' if named else ''}")
    ok = chosen[0] == answer.strip().strip("()").upper()
    return Verdict(float(ok), ok, f"chose {chosen[0]}, expected {answer}")


def normalize_ocr(text: str) -> str:
    """Case, Unicode compatibility forms and runs of whitespace do not count; punctuation does."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def judge_similar(
    response: str, answer: str, clean: Callable[[str], str], correct_at: float, strict_format: bool
) -> Verdict:
    """Normalized edit similarity of the final answer to the ground truth; final answers that disagree, and
    alternatives or a list the ground truth lacks ("dark red or dark blue", "red, blue, green"), are ambiguous."""
    texts = answer_texts(response, strict_format)
    if texts is None:
        return FORMAT
    finals = distinct([clean(text) for text in texts], str.__eq__)
    if len(finals) > 1:
        return ambiguous(f"{len(finals)} different final answers: {finals}")
    if any(names_several(text, answer) for text in texts):
        return ambiguous(f"names several answers: {texts[0]!r}")
    want = clean(answer)
    similarity = edit_similarity(finals[0], want)
    ok = similarity >= correct_at
    return Verdict(similarity, ok, f"edit similarity {similarity:.2f} to {want!r} (correct at {correct_at})")


def predicate(text: str) -> str | None:
    """What a one-sentence answer says its subject is, in normal form: "The colour of the shape is dark red." ->
    "dark red", "It's a triangle in the image." -> "triangle"; None for several sentences or no copula. One
    reading per sentence (after its last copula), so a sentence listing candidates reads as that whole list."""
    if SENTENCE_BREAK.search(text.strip()):
        return None
    normal = normalize_answer(text)
    copulas = list(COPULA.finditer(normal))
    said = FILLER.sub("", normal[copulas[-1].end() :]).strip() if copulas else ""
    return said or None


def named_candidates(normal: str, candidates: Sequence[str]) -> dict[str, bool]:
    """Each candidate (in normal form) `normal` names, a name inside a longer one's being that one's ("dark red"
    names dark red, not also red), mapped to whether it is named without a negation somewhere."""
    spans = [
        (name, m.start(), m.end())
        for name in candidates
        for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", normal)
    ]
    named: dict[str, bool] = {}
    for name, start, end in spans:
        if not any(o[1] <= start and end <= o[2] and (o[1], o[2]) != (start, end) for o in spans):
            named[name] = named.get(name, False) or not negated(normal, start)
    return named


def text_answers(prompts: pl.DataFrame) -> frozenset[str]:
    """The distinct answers of a category's `text` prompts (a prompt table): the text judge's candidates."""
    return frozenset(prompts.filter(pl.col("answer_type") == "text")["answer"].unique().to_list())


def judge_text(response: str, answer: str, strict_format: bool = False, candidates: Collection[str] = ()) -> Verdict:
    """Correct when the final answer, in normal form (`normalize_answer`), is the ground truth, or names it as its
    one candidate: where `candidates` (the category's answers) hold the ground truth, the one candidate the answer
    names ("It is dark red." among dark red, light red, ...: two named, even one negated, are ambiguous); else
    the predicate of a one-sentence answer ("The colour is dark red."). Partial credit by edit similarity to what
    was read; alternatives or a list the ground truth lacks ("dark red or light red", "red, blue") are ambiguous."""
    texts = answer_texts(response, strict_format)
    if texts is None:
        return FORMAT
    if any(names_several(text, answer) for text in texts):
        return ambiguous(f"names several answers: {texts[0]!r}")
    want = normalize_answer(answer)
    vocabulary = {normalize_answer(c) for c in candidates}
    readings = []
    for text in texts:
        normal = normalize_answer(text)
        named = named_candidates(normal, sorted(vocabulary - {""})) if want in vocabulary and normal != want else {}
        if len(named) > 1:
            return ambiguous(f"names {len(named)} candidates: {sorted(named)}")
        name, affirmed = next(iter(named.items()), ("", False))
        readings.append(normal if normal == want else name if affirmed else predicate(text) or normal)
    finals = distinct(readings, str.__eq__)
    if len(finals) > 1:
        return ambiguous(f"{len(finals)} different final answers: {finals}")
    similarity = edit_similarity(finals[0], want)
    ok = similarity == 1.0
    return Verdict(similarity, ok, f"read {finals[0]!r}: edit similarity {similarity:.2f} to {want!r}")


def judge_ocr(
    response: str, answer: str, settings: RuleSettings = RuleSettings(), strict_format: bool = False
) -> Verdict:
    """Normalized edit similarity of the transcript to the ground truth, correct from `ocr_correct_at`."""
    return judge_similar(response, answer, normalize_ocr, settings.ocr_correct_at, strict_format)


def judge_math(response: str, answer: str, strict_format: bool = False) -> Verdict:
    """Symbolic equivalence by `math-verify` (2(x+1) = 2x+2, 1/2 = 0.5, \\{1,2\\} = \\{2,1\\}) of the final
    answer. math-verify reads the last expression of a text, so hedges ("2 or 3"), listed numbers ("2, 3"),
    final answers that disagree, and free text naming other numbers than its result are ambiguous."""
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
        texts = answer_texts(response, strict_format)
        if texts is None:
            return FORMAT
        texts = [number_words_to_digits(text) for text in texts]
        listed = [text for text in texts if names_several(text, answer, HEDGE) or NUMBER_LIST.search(plain_math(text))]
        if listed:
            return ambiguous(f"names several results: {listed[0]!r}")
        parsed = [got for got in (parse_math(text, limit) for text in texts) if got]
        if not parsed:
            return Verdict(0.0, False, "no math expression found")
        try:
            results = distinct(parsed, lambda a, b: verify(a, b, timeout_seconds=limit, raise_on_error=True))
            if len(results) > 1:
                return ambiguous(f"{len(results)} different final answers: {[got[-1] for got in results]}")
            got = results[0]
            if not marked_answers(response, stated=True) and prose_names_other_numbers(response, got):
                return ambiguous(f"free text names numbers besides its result {got[-1]}; give it after 'Answer:'")
            ok = verify(gold, got, timeout_seconds=limit, raise_on_error=True)
        except Exception as err:  # sympy cannot compare what the response wrote: not equivalent
            return Verdict(0.0, False, f"answered {parsed[-1][-1]}, not comparable to {answer}: {type(err).__name__}")
    except TimeoutException as err:
        raise JudgeFailure("math_timeout", f"math-verify gave up after {limit}s: {err}") from err
    return Verdict(float(ok), ok, f"answered {got[-1]}, expected {answer}")


def plain_math(text: str) -> str:
    """`text` without its LaTeX and its bracketed groups: where listed numbers are several results."""
    return GROUPED.sub(" ", LATEX.sub(" ", text))


def parse_math(text: str, limit: int | None) -> list:
    """math-verify's reading of a final answer, as written or as LaTeX (a box's content: "\\frac12");
    [] when it reads nothing (an unparseable response is a wrong answer, not a judge failure)."""
    from math_verify import parse

    for candidate in (text, f"${text}$"):
        try:
            got = parse(candidate, parsing_timeout=limit, raise_on_error=True)
        except Exception:
            got = []
        if got:
            return got
    return []


def prose_names_other_numbers(response: str, got: list) -> bool:
    """In free text (words, not one bare expression), a plain number outside LaTeX other than the result."""
    plain = LATEX.sub(" ", response)
    if not re.search(r"[A-Za-z]{2,}", plain):
        return False
    try:
        result = float(got[0])  # a sympy number
    except (TypeError, ValueError):
        result = math.nan  # an expression or a set: no plain number is it
    return any(not math.isclose(q.value, result) for q in quantities(plain))


def parse_fields(text: str) -> dict[str, list[str]]:
    """Each 'key: value' field of a '; '-separated text, with every value given for the key."""
    fields: dict[str, list[str]] = {}
    for part in text.split(";"):
        key, sep, value = part.partition(":")
        if sep:
            fields.setdefault(normalize_answer(key), []).append(value)
    return fields


def stuffed_fields(got: Mapping[str, list[str]], expected: Mapping[str, str]) -> list[str]:
    """The fields given several values, or a value listing several where the expected one does not."""
    return [
        key
        for key, values in got.items()
        if len({normalize_answer(v) for v in values}) > 1
        or any(names_several(v, expected.get(key, "")) for v in values)
    ]


def judge_structured(response: str, answer: str) -> Verdict:
    """Credit per right field; a field given several values ("colour: red; colour: blue", "colour: red or
    blue") makes the whole answer ambiguous (answer stuffing)."""
    expected = {key: normalize_answer(values[-1]) for key, values in parse_fields(answer).items()}
    if not expected:
        raise JudgeFailure("answer_not_structured", f"ground truth {answer!r} has no 'key: value' fields")
    got = parse_fields(strip_markdown(response))
    stuffed = stuffed_fields(got, expected)
    if stuffed:
        return ambiguous(f"several values for fields {stuffed}")
    wrong = [key for key, value in expected.items() if normalize_answer(got.get(key, [""])[0]) != value]
    score = 1.0 - len(wrong) / len(expected)
    return Verdict(score, not wrong, f"wrong fields: {wrong}" if wrong else "all fields right")


def judge(
    answer_type: str,
    response: str,
    answer: str,
    objects: Sequence[str],
    choices: Sequence[str] = (),
    settings: RuleSettings = RuleSettings(),
    *,
    vocabulary: Collection[str] = (),
    synonyms: Mapping[str, str] | None = None,
    strict_format: bool = False,
    answers: Collection[str] = (),
) -> Verdict:
    """The rule verdict for one response; raises `JudgeFailure` when the ground truth cannot be judged.
    `vocabulary` (the category's objects) and `synonyms` are the open judge's; `answers` (the category's text
    answers) the text judge's candidates; `strict_format` credits only a final answer after 'Answer:' or in
    \\boxed{}."""
    if answer_type == "number":
        return judge_number(response, answer, settings, strict_format)
    if answer_type == "choice":
        return judge_choice(response, answer, choices, strict_format)
    if answer_type == "text":
        return judge_text(response, answer, strict_format, answers)
    if answer_type == "structured":
        return judge_structured(response, answer)
    if answer_type == "open":
        return judge_scene(response, objects, vocabulary, synonyms)
    if answer_type == "math":
        return judge_math(response, answer, strict_format)
    if answer_type == "ocr":
        return judge_ocr(response, answer, settings, strict_format)
    raise ValueError(f"no rule judge for answer type {answer_type!r}; use one of {ANSWER_TYPES}")


class RuleJudge:
    """The rule judges by answer type: fast, local, run on every rollout of verifiable categories."""

    pure = True

    def __init__(
        self,
        settings: RuleSettings = RuleSettings(),
        name: str = "rule",
        reference: ReferenceSettings = ReferenceSettings(),
        strict_format: bool = False,
    ) -> None:
        self.settings, self.name, self.reference, self.strict_format = settings, name, reference, strict_format

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun:
        return JudgeRun([self._one(item) for item in items])

    def _one(self, item: JudgeItem) -> Verdict | JudgeFailure:
        try:
            return judge(
                item.answer_type,
                item.response,
                item.answer,
                item.objects,
                item.choices,
                self.settings,
                vocabulary=item.vocabulary,
                synonyms=self.reference.synonyms,
                strict_format=self.strict_format,
                answers=item.answers,
            )
        except JudgeFailure as failure:
            return failure
