"""Where a category's prompts come from: `synthetic:<task>` generated here, or a user's dataset
(`prompts/datasets.py`); either way images go into the store."""

from __future__ import annotations

from vlm_rl_assets.prompts import world
from vlm_rl_assets.prompts.dataset_files import is_dataset_source
from vlm_rl_assets.prompts.datasets import Progress, load_dataset
from vlm_rl_assets.prompts.prompt_table import PromptSource, SourceLoad
from vlm_rl_assets.prompts.row_formats import RowFormat
from vlm_rl_assets.store.base import Store, png_bytes


def load_sources(
    store: Store,
    source: str,
    sizes: dict[str, int],
    seed: int,
    fractions: dict[str, float],
    row_format: RowFormat = RowFormat(),
    progress: Progress | None = None,
) -> SourceLoad:
    """`sizes` maps a split to its size (a dataset's at most); `seed` drives synthetic tasks (each split its own
    seed stream), `fractions` (per held-out split) place dataset rows that name no split, `row_format` reads them."""
    if is_dataset_source(source):
        return load_dataset(source, store, sizes, fractions, row_format, progress)
    sources = synthetic_sources(store, source.removeprefix("synthetic:"), sizes, seed)
    return SourceLoad(sources, [], sum(sizes.values()))


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
