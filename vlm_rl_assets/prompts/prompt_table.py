"""The prompt library: templates per answer type, reference responses, and the prompt table.

Short answers hurt DPO, so the chain-of-thought template makes responses long: it replaces the
short-answer instructions benchmarks end their questions with ("Answer with the option's letter
from the given choices directly.") by a think-step-by-step instruction. Multiple choice can be
rewritten into an open question answered by the option's text (`mcq_to_open`), so the answer cannot
be guessed from a letter. Prompts whose reference response is shorter than the category's minimum
are dropped and counted.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, replace

import polars as pl

from vlm_rl_assets.store import schemas

COT_INSTRUCTIONS = {
    "choice": "Think step by step, then finish with 'Answer: (letter)'.",
    "number": "Think step by step, then finish with 'Answer: number'.",
    "text": "Think step by step, then finish with 'Answer: your answer'.",
    "math": "Think step by step, then finish with 'Answer: the final result'.",
}
TEMPLATES = ("plain", "cot")
ANSWER_TYPES = ("number", "choice", "text", "structured", "open", "math", "ocr")  # each has a rule judge
LETTERS = string.ascii_uppercase
# The short-answer instructions common benchmarks (LLaVA, MMBench, ScienceQA, VQAv2 style) end questions with.
SHORT_ANSWER_INSTRUCTION = re.compile(
    r"\s*(?:answer with the option[’']?s letter from the given choices directly"
    r"|answer the question using a single (?:word|number) or phrase"
    r"|answer with (?:a single|one) (?:word|number|letter|phrase)(?: or phrase)?)\.?\s*$",
    re.IGNORECASE,
)
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[).:]\s+(\S.*)$")  # "(B) square", "B. square", "B: square"
OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices)\s*:?\s*$", re.IGNORECASE)
REWRITES = ("short_answer_instruction", "mcq_to_open")
FRAME_ROWS = 10_000  # prompt rows held as dicts before they become a DataFrame piece (dicts take ~5x the memory)


@dataclass(frozen=True, slots=True)  # slots: a 100k-row dataset holds 100k of them
class PromptSource:
    """A question with its ground truth and stored images, before templating."""

    question: str
    answer: str
    answer_type: str
    images: tuple[str, ...]  # image-store URIs
    choices: tuple[str, ...] = ()
    rationale: str = ""
    objects: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceLoad:
    """A category's sources per split, and the input rows refused on the way (`key`, `reason`)."""

    sources: dict[str, list[PromptSource]]
    refused: list[tuple[str, str]]
    rows: int  # input rows examined: the denominator of the bad fraction


@dataclass(frozen=True)
class PromptTable:
    prompts: pl.DataFrame
    dropped: pl.DataFrame  # quarantine rows: why each source did not become a prompt
    rewrites: dict[str, int]  # kept prompts per rewrite (REWRITES)


class AnswerKeyError(ValueError):
    """A multiple-choice answer that names no option."""


def strip_short_answer_instruction(question: str) -> str:
    return SHORT_ANSWER_INSTRUCTION.sub("", question)


def apply_template(template: str, question: str, answer_type: str) -> str:
    if template == "plain":
        return question
    if template == "cot":
        if answer_type not in COT_INSTRUCTIONS:
            raise ValueError(
                f"template 'cot' needs an answer type in {sorted(COT_INSTRUCTIONS)}, got {answer_type!r}; "
                "use template 'plain' for this category"
            )
        return f"{strip_short_answer_instruction(question)}\n{COT_INSTRUCTIONS[answer_type]}"
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


def reference_response(template: str, answer: str, answer_type: str, rationale: str) -> str:
    """What a correct response looks like under `template` (the SFT target and the GT style)."""
    if template == "cot":
        final = f"({answer})" if answer_type == "choice" else answer
        return f"{rationale} Answer: {final}".strip()
    return answer


def open_question(source: PromptSource) -> PromptSource:
    """A multiple-choice source as an open question: options and short-answer instruction dropped, the
    answer the right option's text (options from `choices`, else the question's option lines)."""
    lines = strip_short_answer_instruction(source.question).splitlines()
    options = [OPTION_LINE.match(line) for line in lines]
    texts = list(source.choices) or [m.group(2) for m in options if m]
    letter = source.answer.strip().strip("()").upper()
    if len(letter) != 1 or letter not in LETTERS[: len(texts)]:
        raise AnswerKeyError(f"bad_answer_key: {source.answer!r} names none of the {len(texts)} options")
    answer = OPTION_LINE.sub(r"\2", texts[LETTERS.index(letter)]).strip()
    kept = [line for line, m in zip(lines, options) if not m and not OPTIONS_HEADER.match(line)]
    return replace(source, question="\n".join(kept).strip(), answer=answer, answer_type="text", choices=())


def prompt_id(category: str, question: str, images: tuple[str, ...]) -> str:
    """Stable across runs: the same question on the same images in a category is the same prompt."""
    key = "\x1f".join((category, question, *images))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def word_count(text: str) -> int:
    return len(text.split())


def prepare(source: PromptSource, template: str, mcq_to_open: bool) -> tuple[PromptSource, str, tuple[str, ...]]:
    """The source after the configured rewrites, its prompt text, and the rewrites that applied.

    Raises AnswerKeyError when `mcq_to_open` meets an answer that names no option."""
    applied: list[str] = []
    if mcq_to_open and source.answer_type == "choice":
        source = open_question(source)
        applied.append("mcq_to_open")
    if template == "cot" and strip_short_answer_instruction(source.question) != source.question:
        applied.append("short_answer_instruction")
    return source, apply_template(template, source.question, source.answer_type), tuple(applied)


# a prompt in several splits stays in the first: held-out splits own overlaps, and train never repeats an SFT row
HELD_OUT_FIRST = ("bench", "dev", "bootstrap", "train")


def build_prompt_table(
    category: str,
    template: str,
    min_words: int,
    sources: dict[str, list[PromptSource]],
    *,
    mcq_to_open: bool = False,
    require_objects: bool = False,
) -> PromptTable:
    """Rewrite and template every source of every split; count the rewrites and every dropped prompt.

    The splits stay disjoint: a prompt already in bench is dropped from dev, bootstrap and train, one in dev from
    bootstrap and train, one in bootstrap (the embedded base's SFT rows) from train.
    `require_objects` (the open `reference` judge scores against them) drops sources that list no objects.
    """
    frames, rows, dropped, owner = [], [], [], {}
    rewrites = dict.fromkeys(REWRITES, 0)
    for split, items in sorted(sources.items(), key=lambda kv: HELD_OUT_FIRST.index(kv[0])):
        for original in items:
            try:
                source, prompt_text, applied = prepare(original, template, mcq_to_open)
            except AnswerKeyError as err:
                key = prompt_id(category, original.question, original.images)
                dropped.append({"stage": "prompt_mixture", "category": category, "key": key, "reason": str(err)})
                continue
            pid = prompt_id(category, source.question, source.images)
            reference = reference_response(template, source.answer, source.answer_type, source.rationale)
            reason = _drop_reason(owner.get(pid), split, source, reference, min_words, require_objects)
            if reason:
                dropped.append({"stage": "prompt_mixture", "category": category, "key": pid, "reason": reason})
                continue
            owner[pid] = split
            for name in applied:
                rewrites[name] += 1
            rows.append(_prompt_row(pid, category, split, source, prompt_text, reference))
            if len(rows) == FRAME_ROWS:
                frames.append(pl.DataFrame(rows, schema=schemas.PROMPTS))
                rows = []
    frames.append(pl.DataFrame(rows, schema=schemas.PROMPTS) if rows else schemas.empty(schemas.PROMPTS))
    prompts = pl.concat(frames, rechunk=False)  # a copy of the whole table saved; Parquet writes chunks as they are
    quarantine = pl.DataFrame(dropped, schema=schemas.QUARANTINE) if dropped else schemas.empty(schemas.QUARANTINE)
    return PromptTable(prompts, quarantine, rewrites)


def _drop_reason(
    owner: str | None, split: str, source: PromptSource, reference: str, min_words: int, require_objects: bool
) -> str | None:
    """Why a prepared prompt is dropped from `split` (`owner`: the split that already holds it), or None."""
    if owner is not None:
        return "duplicate_prompt" if owner == split else f"in_{owner}_split"
    if require_objects and not source.objects:
        return "no_objects: the reference judge scores a description against the image's objects; list them"
    if word_count(reference) < min_words:
        return f"reference_shorter_than_{min_words}_words"
    return None


def _prompt_row(
    pid: str, category: str, split: str, source: PromptSource, prompt_text: str, reference: str
) -> dict[str, object]:
    """One PROMPTS row."""
    return {
        "prompt_id": pid,
        "category": category,
        "split": split,
        "question": source.question,
        "prompt_text": prompt_text,
        "answer": source.answer,
        "answer_type": source.answer_type,
        "reference": reference,
        "choices": list(source.choices),
        "images": list(source.images),
        "objects": list(source.objects),
    }
