"""The prompt library: templates per answer type, reference responses, and the prompt table.

Short answers hurt DPO, so multiple-choice and number questions get a chain-of-thought template
whose responses are long; prompts whose reference response is shorter than the category's
minimum are dropped and counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from vlm_rl_assets.core import schemas

COT_INSTRUCTIONS = {
    "choice": "Think step by step, then finish with 'Answer: (letter)'.",
    "number": "Think step by step, then finish with 'Answer: number'.",
}
TEMPLATES = ("plain", "cot")


@dataclass(frozen=True)
class PromptSource:
    """A question with its ground truth and stored images, before templating."""

    question: str
    answer: str
    answer_type: str
    images: tuple[str, ...]  # image-store URIs
    choices: tuple[str, ...] = ()
    rationale: str = ""
    objects: tuple[str, ...] = ()


def apply_template(template: str, question: str, answer_type: str) -> str:
    if template == "plain":
        return question
    if template == "cot":
        if answer_type not in COT_INSTRUCTIONS:
            raise ValueError(
                f"template 'cot' needs an answer type in {sorted(COT_INSTRUCTIONS)}, got {answer_type!r}; "
                "use template 'plain' for this category"
            )
        return f"{question}\n{COT_INSTRUCTIONS[answer_type]}"
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


def reference_response(template: str, answer: str, answer_type: str, rationale: str) -> str:
    """What a correct response looks like under `template` (the SFT target and the GT style)."""
    if template == "cot":
        final = f"({answer})" if answer_type == "choice" else answer
        return f"{rationale} Answer: {final}".strip()
    return answer


def prompt_id(category: str, question: str, images: tuple[str, ...]) -> str:
    """Stable across runs: the same question on the same images in a category is the same prompt."""
    key = "\x1f".join((category, question, *images))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def word_count(text: str) -> int:
    return len(text.split())


def build_prompt_table(
    category: str, template: str, min_words: int, sources: dict[str, list[PromptSource]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Template every source of every split; return (prompts, quarantine of dropped prompts).

    A prompt that appears in the bench split is never kept in train (the splits stay disjoint).
    """
    rows, dropped, seen = [], [], set()
    bench_ids = {prompt_id(category, s.question, s.images) for s in sources.get("bench", [])}
    for split, items in sorted(sources.items(), key=lambda kv: kv[0] != "bench"):
        for source in items:
            pid = prompt_id(category, source.question, source.images)
            reference = reference_response(template, source.answer, source.answer_type, source.rationale)
            reason = None
            if split != "bench" and pid in bench_ids:
                reason = "in_bench_split"
            elif pid in seen:
                reason = "duplicate_prompt"
            elif word_count(reference) < min_words:
                reason = f"reference_shorter_than_{min_words}_words"
            if reason:
                dropped.append({"stage": "prompt_mixture", "category": category, "key": pid, "reason": reason})
            else:
                seen.add(pid)
                rows.append(
                    {
                        "prompt_id": pid,
                        "category": category,
                        "split": split,
                        "question": source.question,
                        "prompt_text": apply_template(template, source.question, source.answer_type),
                        "answer": source.answer,
                        "answer_type": source.answer_type,
                        "reference": reference,
                        "choices": list(source.choices),
                        "images": list(source.images),
                        "objects": list(source.objects),
                    }
                )
    prompts = pl.DataFrame(rows, schema=schemas.PROMPTS) if rows else schemas.empty(schemas.PROMPTS)
    quarantine = pl.DataFrame(dropped, schema=schemas.QUARANTINE) if dropped else schemas.empty(schemas.QUARANTINE)
    return prompts, quarantine
