"""A stage's prompt images, decoded; the ones that fail are quarantined under the run's (category, round) (or `all`)."""

import dagster as dg
import polars as pl
from PIL import Image

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.store.quarantine import load_images_or_fail


def load_images(
    context: dg.AssetExecutionContext, config: PipelineConfig, store: Store, prompts: pl.DataFrame, asset: str
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]], pl.DataFrame]:
    """(prompts that loaded, their images, quarantine rows); fails above `max_bad_fraction`."""
    return load_images_or_fail(
        store,
        prompts,
        asset=asset,
        category=partition_slice(context).key(),
        max_pixels=config.max_image_pixels,
        max_bad_fraction=config.max_bad_fraction,
        warn=context.log.warning,
    )
