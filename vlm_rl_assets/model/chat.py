"""The one chat format shared by the rollout engine, SFT and DPO.

Engine and trainer must tokenize a prompt identically (same template, same image tokens), so both
build their messages here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def user_message(prompt_text: str, n_images: int) -> dict:
    """A user turn: the images first, then the question (Qwen2-VL's order)."""
    content = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": prompt_text})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def preference_example(prompt_text: str, images: Sequence[Any], chosen: str, rejected: str) -> dict[str, Any]:
    """A DPO example in TRL's conversational vision format: what `dpo_train` feeds `DPOTrainer`, and
    what the pre-flight check tokenizes as the trainer would."""
    return {
        "prompt": [user_message(prompt_text, len(images))],
        "chosen": [assistant_message(chosen)],
        "rejected": [assistant_message(rejected)],
        "images": list(images),
    }
