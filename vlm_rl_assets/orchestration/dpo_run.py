"""The DPO step of dpo_checkpoint[c] and of policy_checkpoint: the pairs' images loaded under the run's partition, DPO
from the round's start model against its reference, and the checkpoint's metadata and training_health check."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.dpo.train_pairs import train_pairs
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.training_run import health_check, training_metadata
from vlm_rl_assets.training.settings import TrainingSettings


def train_dpo(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    asset: str,
    key: str,
    models: tuple[Path, Path],
    pairs: pl.DataFrame,
    settings: tuple[TrainingSettings, DPOSettings],
    metadata: dict | None = None,
) -> dg.MaterializeResult:
    """DPO on `pairs` (each with its own beta) from `models` (start, reference: `round_models`) into
    `<asset>/<key>`; `metadata` added to the training's."""
    config, store = pipeline.config, pipeline.store
    start, reference = models
    loaded, images, refused = load_images(context, config, store, pairs, asset)
    trained = train_pairs(
        store,
        loaded,
        images,
        start,
        asset,
        key,
        *settings,
        model=config.model,
        engine=config.engine,
        health=config.training_health,
        cache_dir=config.storage.cache_path,
        log=context.log.info,
        reference_dir=reference,
    )
    return dg.MaterializeResult(
        metadata={**training_metadata(trained, refused), **(metadata or {})},
        check_results=[health_check(context, trained.health, f"{asset}[{key}]")],
    )
