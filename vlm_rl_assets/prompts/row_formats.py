"""How a dataset's rows read as this project's fields, whatever layout the dataset was published in.

`format` names the layout: `native` (this project's columns), `llava` (an image and `conversations` of
`{from, value}` turns), `messages` (TRL's vision format: `images` and `messages`, or `prompt` / `completion`, of
`{role, content}` or as plain text), `mcq_columns` (a question with options in `A`..`E` columns or a `choices` list, the answer a letter
or an index). `columns` maps a format's keys to the dataset's own column names; a key it leaves out reads the
format's usual column. Conversations give the first user turn as the question and the first answer after it as
the ground truth; `answer_type` (the category's) types every row of a dataset that has no such column.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from vlm_rl_assets.prompts.dataset_files import DatasetError, RowError

FORMATS = ("native", "llava", "messages", "mcq_columns")
OPTION_COLUMNS = tuple("ABCDE")
# per format: each key it reads and the columns tried, in order, when `columns` does not name one
KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "native": {
        "question": ("question",),
        "answer": ("answer",),
        "answer_type": ("answer_type",),
        "images": ("images", "image"),
        "choices": ("choices",),
        "rationale": ("rationale",),
        "objects": ("objects",),
        "split": ("split",),
    },
    "llava": {"conversations": ("conversations",), "images": ("image", "images"), "split": ("split",)},
    "messages": {
        "messages": ("messages",),
        "prompt": ("prompt",),
        "completion": ("completion",),
        "images": ("images", "image"),
        "split": ("split",),
    },
    "mcq_columns": {
        "question": ("question",),
        "answer": ("answer",),
        "choices": ("choices",),
        **{letter: (letter,) for letter in OPTION_COLUMNS},
        "hint": ("hint",),
        "images": ("image", "images"),
        "rationale": ("rationale",),
        "split": ("split",),
    },
}
# keys a dataset must have a column for; a tuple of alternatives where any one will do
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "native": (("question",), ("answer",), ("answer_type",), ("images",)),
    "llava": (("conversations",), ("images",)),
    "messages": (("messages", "prompt"), ("images",)),
    "mcq_columns": (("question",), ("answer",), ("images",), ("choices", "A")),
}
IMAGE_TOKEN = re.compile(r"\s*<image>\s*")
USER_ROLES, ASSISTANT_ROLES = ("human", "user"), ("gpt", "assistant")


@dataclass(frozen=True)
class RowFormat:
    """How a category's dataset rows read: its config's `format`, `columns` and `answer_type`."""

    name: str = "native"
    columns: Mapping[str, str] = field(default_factory=dict)  # key -> the dataset's column
    answer_type: str | None = None  # every row's, when set (the dataset's answer_type column is then not read)

    @cached_property
    def keys(self) -> dict[str, tuple[str, ...]]:
        """Each key read, with the columns it may come from (the mapped one, else the format's usual ones)."""
        keys = {key: (self.columns[key],) if key in self.columns else names for key, names in KEYS[self.name].items()}
        if self.answer_type is not None:
            keys.pop("answer_type", None)
        return keys

    def resolve(self, present: Collection[str]) -> dict[str, str]:
        """key -> the column it reads, of a row with columns `present`: the first of its columns there, else its
        first (read as empty)."""
        return {key: next((c for c in names if c in present), names[0]) for key, names in self.keys.items()}

    def check(self, present: Collection[str], uri: str) -> list[str]:
        """The columns to read of a dataset with columns `present`; DatasetError when a mapped column or a required
        key's column is absent, naming the columns it has."""
        keys, have = self.keys, sorted(present)
        absent = {key: column for key, column in self.columns.items() if key in keys and column not in present}
        if absent:
            raise DatasetError(
                f"dataset {uri} lacks the column(s) categories.<c>.columns maps to: "
                f"{', '.join(f'{key} -> {column!r}' for key, column in absent.items())} (it has {have}); "
                "map each key to one of those columns"
            )
        missing = []
        for options in REQUIRED[self.name]:
            read = [key for key in options if key in keys]  # answer_type is not read when the config sets it
            if read and not any(column in present for key in read for column in keys[key]):
                missing.append(" or ".join(keys[key][0] for key in read))
        if missing:
            usual = "; map yours with categories.<c>.columns" + (
                ", or set categories.<c>.answer_type" if "answer_type" in missing else ""
            )
            raise DatasetError(
                f"dataset {uri} lacks the required column(s) {missing} (it has {have}); add them to every row{usual}"
            )
        return [column for column in present if column in set().union(*keys.values())]

    def label(self, key: str, columns: Mapping[str, str]) -> str:
        """How a reason names a key: with the column it was read from when the two differ."""
        column = columns.get(key, key)
        return key if column == key else f"{key} (column {column!r})"

    def to_native(self, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The row's native fields (question, answer, answer_type, images, ...), and how a reason names each (a
        converter names the question and answer by the column it took them from)."""
        columns = self.resolve(raw)
        values = {key: raw.get(column) for key, column in columns.items()}
        labels = {key: self.label(key, columns) for key in columns}
        native = CONVERTERS[self.name](values, labels)
        if self.answer_type is not None:
            native["answer_type"] = self.answer_type
        return native, labels


def _native(values: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return dict(values)


def _llava(values: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    turns = values["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise RowError(f"bad_value: {labels['conversations']} must be a list of {{from, value}} turns")
    labels.update(question=labels["conversations"], answer=labels["conversations"])
    roles = [(str(turn.get("from", "")).lower(), turn.get("value")) for turn in turns]
    question, answer = _exchange(roles, labels["conversations"])
    return {"question": question, "answer": answer, "images": values["images"], "split": values["split"]}


def _messages(values: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """TRL's conversational `messages`, or `prompt` + `completion` as messages or (its standard form) as texts."""
    images, split = values["images"], values["split"]
    if values["messages"] is None and isinstance(values["prompt"], str):
        labels.update(question=labels["prompt"], answer=labels["completion"])
        return {"question": values["prompt"], "answer": values["completion"], "images": images, "split": split}
    if values["messages"] is not None:
        label, turns = labels["messages"], values["messages"]
    else:
        label = f"{labels['prompt']} + {labels['completion']}"
        turns = _list(values["prompt"]) + _list(values["completion"])
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise RowError(f"bad_value: {label} must be a list of {{role, content}} messages")
    labels.update(question=label, answer=label)
    roles = [(str(turn.get("role", "")).lower(), _content_text(turn.get("content"))) for turn in turns]
    question, answer = _exchange(roles, label)
    return {"question": question, "answer": answer, "images": images, "split": split}


def _mcq_columns(values: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    choices = values["choices"]
    if choices is None:
        choices = []
        for letter in OPTION_COLUMNS:
            option = values.get(letter)
            if _blank(option):  # a 2-option row of a 4-option table: C and D empty
                break
            choices.append(str(option))
    if not isinstance(choices, list) or len(choices) < 2:
        raise RowError(
            f"missing_options: a multiple-choice row needs at least two options, in {labels['A']} and {labels['B']} "
            f"(then C..E) or a {labels['choices']} list; got {choices!r:.80}"
        )
    answer = values["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise RowError(f"bad_answer_key: {labels['answer']} {answer} indexes none of the {len(choices)} options")
        answer = string.ascii_uppercase[answer]
    question = values["question"]
    if isinstance(question, str) and question.strip():  # an empty one stays empty, to be refused as such
        options = "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, choices))
        hint = "" if _blank(values["hint"]) else str(values["hint"]).strip()
        question = "\n".join(part for part in (hint, question.strip(), options) if part)
    return {
        "question": question,
        "answer": answer,
        "answer_type": "choice",
        "choices": choices,
        "images": values["images"],
        "rationale": values["rationale"],
        "split": values["split"],
    }


def _exchange(turns: list[tuple[str, Any]], label: str) -> tuple[Any, Any]:
    """(first user turn, first answer after it), `<image>` placeholders dropped from the question."""
    user = next((i for i, (role, _) in enumerate(turns) if role in USER_ROLES), None)
    if user is None:
        raise RowError(f"no_user_turn: {label} has no human/user turn to take the question from")
    answer = next((text for role, text in turns[user + 1 :] if role in ASSISTANT_ROLES), None)
    if answer is None:
        raise RowError(f"no_answer_turn: {label} has no gpt/assistant turn after the question")
    question = turns[user][1]
    return IMAGE_TOKEN.sub("\n", question).strip() if isinstance(question, str) else question, answer


def _content_text(content: Any) -> Any:
    """A message's text: a string as it is, TRL's typed parts' text joined (image parts dropped)."""
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text")
    return content


def _blank(value: Any) -> bool:
    """None, empty text, or pandas' NaN for a missing value."""
    return (
        value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value)
    )


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


CONVERTERS = {"native": _native, "llava": _llava, "messages": _messages, "mcq_columns": _mcq_columns}
