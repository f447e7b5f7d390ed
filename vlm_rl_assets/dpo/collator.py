"""TRL's vision preference batches, with each example's text tokenized once instead of every step of every epoch.

TRL's `DataCollatorForVisionPreference` renders the chat template, tokenizes prompt, chosen and rejected and processes
every image twice (once per half) at each step: ~70% of its time on the tiny VLM is text work whose result never
changes. `PretokenizedCollator` runs TRL's collator once over the dataset (`pretokenize`) and keeps each example's
token ids; a step then only processes each image once and lays the ids out exactly as TRL does (same padding values,
same flush-left), so the batch tensors are equal to TRL's. Examples it has not seen go through TRL's collator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.utils import flush_left, pad

EXAMPLE_FIELDS = ("prompt", "chosen", "rejected", "images")
_TEXT_FIELDS = {"input_ids", "attention_mask", "completion_mask", "mm_token_type_ids"}  # what `_layout` builds


@dataclass(frozen=True)
class _Tokens:
    """One example's ids as TRL's collator makes them, unpadded."""

    prompt: torch.Tensor
    prompt_types: torch.Tensor | None  # mm_token_type_ids of the prompt (Qwen2-VL and successors)
    chosen: torch.Tensor
    rejected: torch.Tensor


def _key(example: dict[str, Any]) -> tuple:
    """What an example's ids depend on: its messages and its images' sizes (which fix the image token counts)."""
    texts = (repr(example[field]) for field in ("prompt", "chosen", "rejected"))
    return (*texts, tuple(image.size for image in example["images"]))


class PretokenizedCollator:
    """Drop-in for TRL's vision preference collator (see the module docstring)."""

    def __init__(self, inner: DataCollatorForVisionPreference) -> None:
        self.inner = inner
        self._untruncated = dataclasses.replace(inner, max_length=None)
        self._tokens: dict[tuple, _Tokens] = {}

    def pretokenize(self, examples: Iterable[dict[str, Any]], batch_size: int) -> None:
        """Tokenize `examples` through TRL's own collator, `batch_size` at a time, and keep each one's ids (examples
        already known are skipped). Batches whose image tensors the image processor alone does not reproduce, or that
        carry other fields (e.g. Gemma's token_type_ids, LLaVA-OneVision's image_sizes), are left to TRL."""
        batch = []
        for example in examples:
            if example.get("images") and _key(example) not in self._tokens:
                batch.append({field: example[field] for field in EXAMPLE_FIELDS})
            if len(batch) == batch_size:
                self._remember(batch)
                batch = []
        if batch:
            self._remember(batch)

    def _remember(self, examples: list[dict[str, Any]]) -> None:
        keys = [_key(example) for example in examples]
        out = self._untruncated([dict(example) for example in examples])  # TRL's collator rewrites its examples
        pixels = self._pixels(examples)
        if set(out) - _TEXT_FIELDS != set(pixels) or not all(torch.equal(out[k], v) for k, v in pixels.items()):
            return
        n = len(examples)
        text = out["attention_mask"].bool()
        completion = out["completion_mask"].bool()
        types = out.get("mm_token_type_ids")
        for i, key in enumerate(keys):
            prompt_len = int((text[i] & ~completion[i]).sum())  # rows: [prompt, completion, padding] (flush-left)
            self._tokens[key] = _Tokens(
                prompt=out["input_ids"][i, :prompt_len].clone(),
                prompt_types=None if types is None else types[i, :prompt_len].clone(),
                chosen=out["input_ids"][i][completion[i]].clone(),
                rejected=out["input_ids"][n + i][completion[n + i]].clone(),
            )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        tokens = [self._tokens.get(_key(example)) if example.get("images") else None for example in examples]
        if any(t is None for t in tokens):
            return self.inner(examples)
        return self._layout(tokens) | self._pixels(examples)

    def _pixels(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The image processor's tensors for `examples`' images (pixel values, Qwen's image_grid_thw), repeated for
        the chosen and the rejected rows as TRL's collator lays them out."""
        images = self.inner.processor.image_processor(images=[list(e["images"]) for e in examples], return_tensors="pt")
        return {field: torch.cat([tensor] * 2) for field, tensor in images.items()}

    def _layout(self, tokens: list[_Tokens]) -> dict[str, torch.Tensor]:
        """TRL's layout of [chosen rows, rejected rows]: prompts padded left with the tokenizer's pad id, completions
        padded right (each half with the tokenizer's pad id, then to a common width with TRL's `pad_token_id or
        eos_token_id`), concatenated and flushed left, then truncated to `max_length`."""
        tokenizer = self.inner.processor.tokenizer
        completion_pad = tokenizer.pad_token_id or tokenizer.eos_token_id  # TRL's choice, kept for equal tensors

        def padded(ids: list[torch.Tensor], side: str, value: int) -> tuple[torch.Tensor, torch.Tensor]:
            return pad(ids, padding_value=value, padding_side=side), pad([torch.ones_like(i) for i in ids], 0, side)

        prompt_ids, prompt_mask = padded([t.prompt for t in tokens] * 2, "left", tokenizer.pad_token_id)
        chosen_ids, chosen_mask = padded([t.chosen for t in tokens], "right", tokenizer.pad_token_id)
        rejected_ids, rejected_mask = padded([t.rejected for t in tokens], "right", tokenizer.pad_token_id)
        completion_ids = torch.cat(tuple(pad([chosen_ids, rejected_ids], padding_value=completion_pad)))
        completion_mask = torch.cat(tuple(pad([chosen_mask, rejected_mask], padding_value=0)))
        columns = {
            "attention_mask": torch.cat((prompt_mask, completion_mask), dim=1),
            "input_ids": torch.cat((prompt_ids, completion_ids), dim=1),
            "completion_mask": torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1),
        }
        if tokens[0].prompt_types is not None:
            types = pad([t.prompt_types for t in tokens] * 2, padding_value=0, padding_side="left")
            columns["mm_token_type_ids"] = torch.cat((types, torch.zeros_like(completion_ids)), dim=1)
        flushed = flush_left(*columns.values())
        max_length = self.inner.max_length
        return {name: column[:, :max_length] for name, column in zip(columns, flushed)}
