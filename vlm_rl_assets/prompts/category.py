"""A category's prompts from its config: its sources loaded and templated into its prompt table, as prompt_mixture
stores them and base_model SFT-trains and checks a dataset category on the same rows."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from vlm_rl_assets.prompts.datasets import Progress
from vlm_rl_assets.prompts.prompt_table import PromptTable, SourceLoad, build_prompt_table
from vlm_rl_assets.prompts.row_formats import RowFormat
from vlm_rl_assets.prompts.sources import load_sources
from vlm_rl_assets.store.base import Store


@dataclass(frozen=True)
class PromptSpec:
    """What decides a category's prompts (`PipelineConfig.prompt_spec`)."""

    source: str
    sizes: dict[str, int]  # per split: how many prompts (a dataset's at most)
    fractions: dict[str, float]  # per held-out split: the share of a dataset's rows without a split hashed into it
    seed: int
    template: str  # plain | cot
    min_response_words: int
    mcq_to_open: bool
    require_objects: bool
    row_format: RowFormat = field(default_factory=RowFormat)  # how a dataset's rows read


def category_prompts(
    store: Store, category: str, spec: PromptSpec, skip: Collection[str] = (), progress: Progress | None = None
) -> tuple[SourceLoad, PromptTable]:
    """The category's sources (the splits in `skip` not read) templated into its prompt table."""
    sizes = {split: n for split, n in spec.sizes.items() if split not in skip}
    loaded = load_sources(store, spec.source, sizes, spec.seed, spec.fractions, spec.row_format, progress)
    table = build_prompt_table(
        category,
        spec.template,
        spec.min_response_words,
        loaded.sources,
        mcq_to_open=spec.mcq_to_open,
        require_objects=spec.require_objects,
    )
    return loaded, table
