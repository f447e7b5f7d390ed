"""Pre-flight: the rollout engine must feed the policy the very prompt tokens the DPO trainer trains on.

A different chat template, a system prompt only one side adds, or another image resolution (so
another number of image tokens) makes DPO score responses under prompts the policy never saw, and
nothing fails. The trainer side runs TRL's own vision preference collator (what `DPOTrainer` uses
for image data) on the example `dpo_train` builds, so the check follows TRL rather than a copy of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlm_rl_assets.model.chat import preference_example
from vlm_rl_assets.rollouts.engine import Engine, GenerationRequest

SAMPLE_SIZE = 8
# Any completion: TRL cuts the prompt where the prompt and prompt + completion renderings part.
_COMPLETION = "answer"


class PromptMismatchError(ValueError):
    """The rollout engine and the DPO trainer tokenize a prompt differently."""


def check_agreement(
    engine: Engine, model_dir: str | Path, requests: Sequence[GenerationRequest], sample_size: int = SAMPLE_SIZE
) -> int:
    """Compare the engine's and the DPO trainer's prompt tokens on up to `sample_size` requests spread
    over `requests`; raise `PromptMismatchError` at the first difference, else return how many agreed."""
    from vlm_rl_assets.model.loading import load_processor

    sample = list(requests[:: max(1, len(requests) // sample_size)][:sample_size])
    if not sample:
        return 0
    processor = load_processor(model_dir)  # what `dpo_train` loads
    for ours, theirs in zip(engine.prompt_token_ids(sample), trainer_prompt_ids(processor, sample)):
        if ours != theirs:
            raise PromptMismatchError(_describe(engine.name, processor, model_dir, ours, theirs))
    return len(sample)


def trainer_prompt_ids(processor: Any, requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Each request's prompt tokens as TRL's DPO collator builds them: the tokens before the completion."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    examples = [preference_example(r.prompt_text, r.images, _COMPLETION, _COMPLETION) for r in requests]
    batch = DataCollatorForVisionPreference(processor)(examples)  # rows: chosen of each example, then rejected
    prompt_mask = batch["attention_mask"].bool() & ~batch["completion_mask"].bool()
    return [ids[mask].tolist() for ids, mask in zip(batch["input_ids"][: len(requests)], prompt_mask)]


def _describe(engine_name: str, processor: Any, model_dir: str | Path, ours: list[int], theirs: list[int]) -> str:
    image_id = processor.image_token_id
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return (
        f"pre-flight: the {engine_name} rollout engine and the DPO trainer tokenize the same prompt differently, "
        "so DPO would score responses under a prompt the policy never saw.\n"
        f"  image tokens: engine {ours.count(image_id)}, trainer {theirs.count(image_id)}; "
        f"length: engine {len(ours)}, trainer {len(theirs)}; first difference at token {first}\n"
        f"  engine : {_show(processor, ours)}\n"
        f"  trainer: {_show(processor, theirs)}\n"
        f"Both must use the chat template and image processor settings saved in {model_dir}: look for a chat "
        "template, system prompt or min/max_pixels given to only one of them."
    )


def _show(processor: Any, ids: list[int]) -> str:
    """The decoded tokens, special ones kept, each run of image tokens shortened to `<|image_pad|>×N`."""
    token = processor.image_token
    text = processor.tokenizer.decode(ids, skip_special_tokens=False)
    return repr(re.sub(f"(?:{re.escape(token)})+", lambda m: f"{token}×{len(m.group()) // len(token)}", text))
