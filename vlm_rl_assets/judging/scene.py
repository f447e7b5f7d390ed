"""The open-ended (`reference`, CHAIR-style) judge: the objects a description mentions against the true ones.

Its vocabulary is every object of the category's prompts (the `objects` of all its rows) plus the configured
synonyms (`judges.reference.synonyms`, e.g. couch -> sofa), matched as whole words with their plurals
(dog/dogs, box/boxes, puppy/puppies). A mentioned vocabulary object that is not in the row's objects is
hallucinated; a word outside the vocabulary counts neither way, since the judge cannot know whether it is there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import polars as pl

from vlm_rl_assets.judging.contract import JudgeFailure, Verdict


def canonical(name: str) -> str:
    return " ".join(name.lower().split())


def object_vocabulary(objects: pl.Series) -> frozenset[str]:
    """Every object named by any of a category's prompts (`objects`: their column, one list per row). Each distinct
    list is read once: prompt tables repeat a few scenes over many rows."""
    return frozenset(
        canonical(name) for names in objects.unique().to_list() if names is not None for name in names if name.strip()
    )


def plural_forms(name: str) -> list[str]:
    """`name` and the plurals of its last word: dog -> dogs, box -> boxes, puppy -> puppies."""
    head, _, last = name.rpartition(" ")
    lasts = [last, f"{last}s", f"{last}es"] + ([f"{last[:-1]}ies"] if last.endswith("y") else [])
    return [f"{head} {word}".strip() for word in lasts]


@lru_cache(maxsize=8)
def mention_matcher(
    names: frozenset[str], synonyms: tuple[tuple[str, str], ...]
) -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern for every surface form of the vocabulary and the synonyms (longest first, so "red circle"
    wins over "circle"), and the object each form names."""
    forms: dict[str, str] = {}
    for alias, target in [(name, name) for name in sorted(names)] + list(synonyms):
        for form in plural_forms(alias):
            forms.setdefault(form, target)
    alternatives = (r"\s+".join(map(re.escape, form.split())) for form in sorted(forms, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE) if forms else re.compile(r"(?!)")
    return pattern, forms


def mentioned_objects(text: str, vocabulary: frozenset[str], synonyms: Mapping[str, str]) -> set[str]:
    """The vocabulary objects `text` names, synonyms mapped to their object."""
    aliases = tuple(sorted((canonical(alias), canonical(target)) for alias, target in synonyms.items()))
    pattern, forms = mention_matcher(vocabulary, aliases)
    named = {forms[canonical(match)] for match in pattern.findall(text)}
    return named & vocabulary


def judge_scene(
    response: str, objects: Sequence[str], vocabulary: Iterable[str] = (), synonyms: Mapping[str, str] | None = None
) -> Verdict:
    """Jaccard overlap of the mentioned and the true objects (misses and hallucinations both cost)."""
    truth = {canonical(name) for name in objects if name.strip()}
    if not truth:
        raise JudgeFailure(
            "no_objects",
            "an open answer is scored against its row's objects and this row lists none; "
            "add an objects list to the dataset row, or judge the category with judge: vlm",
        )
    mentioned = mentioned_objects(response, frozenset(vocabulary) | truth, synonyms or {})
    covered, hallucinated = mentioned & truth, mentioned - truth
    score = len(covered) / len(mentioned | truth)
    return Verdict(score, score == 1.0, f"covered {len(covered)}/{len(truth)}, hallucinated {sorted(hallucinated)}")
