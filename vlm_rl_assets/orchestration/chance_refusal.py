"""The refusal of a category whose base is at chance: prompt_mixture and rollouts fail at once, saying how to go on
anyway, when base_model found the base at chance on it."""

import dagster as dg

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation import chance
from vlm_rl_assets.store.base import Store


def refuse_at_chance(config: PipelineConfig, store: Store, category: str, asset: str) -> None:
    """Fail `asset` of `category` when base_model found the base at chance on it (its stored verdict for this
    model.path), unless `categories.<c>.allow_chance_base` says go."""
    if config.category(category).allow_chance_base:
        return
    if why := chance.refusal(store, category, config.model.path, asset):
        override = f"categories.{category}.allow_chance_base: true"
        raise dg.Failure(description=why, metadata={"category": category, "override": override})
