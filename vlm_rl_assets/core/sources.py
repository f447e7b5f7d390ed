"""Where a category's prompts come from: `synthetic:<task>` generated here, images into the store."""

from __future__ import annotations

from vlm_rl_assets.core import world
from vlm_rl_assets.core.prompts import PromptSource
from vlm_rl_assets.core.storage import Store, png_bytes


def synthetic_sources(store: Store, task: str, splits: dict[str, int], seed: int) -> dict[str, list[PromptSource]]:
    """`splits` maps a split name to its size; each split has its own seed stream."""
    return {
        split: [
            PromptSource(
                question=item.question,
                answer=item.answer,
                answer_type=item.answer_type,
                images=(store.put_image(png_bytes(item.image)),),
                choices=item.choices,
                rationale=item.rationale,
                objects=tuple(obj.name for obj in item.objects),
            )
            for item in world.generate(task, split, n, seed)
        ]
        for split, n in splits.items()
    }
