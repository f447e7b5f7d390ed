"""Shared steps of the model-running assets: thread count, a table's images, opening and pre-flight checking an engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
from PIL import Image

from vlm_rl_assets.assets.ui import markdown_table, progress_logger
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.core import quarantine, schemas
from vlm_rl_assets.core.storage import Store

if TYPE_CHECKING:
    from vlm_rl_assets.core.engine import Engine

CURVE_COLUMNS = ("step", "loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


def open_engine(config: PipelineConfig, model_dir: Path) -> Engine:
    """The rollout engine `engine.kind` names, on `model_dir` (torch threads set first: heavy imports happen here)."""
    import torch

    from vlm_rl_assets.core.engine import HFEngine
    from vlm_rl_assets.core.vllm_engine import VLLMEngine

    torch.set_num_threads(config.model.torch_threads)
    engine = config.engine
    openers = {
        "hf": lambda: HFEngine(model_dir, device=config.model.device, batch_size=engine.batch_size),
        "vllm": lambda: VLLMEngine(
            model_dir,
            batch_size=engine.batch_size,
            tensor_parallel_size=engine.tensor_parallel_size,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            max_images_per_prompt=engine.max_images_per_prompt,
            seed=engine.seed,
        ),
    }
    return openers[engine.kind]()


def open_checked_engine(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    model_dir: Path,
    prompts: pl.DataFrame,
    images: list[tuple[Image.Image, ...]],
) -> Engine:
    """`open_engine`, then the pre-flight check that it tokenizes `prompts` exactly as the DPO trainer will."""
    from vlm_rl_assets.core.engine import GenerationRequest
    from vlm_rl_assets.core.preflight import check_agreement

    engine = open_engine(config, model_dir)
    requests = [GenerationRequest(text, imgs) for text, imgs in zip(prompts["prompt_text"], images)]
    agreed = check_agreement(engine, model_dir, requests)
    context.log.info(f"pre-flight: the {engine.name} engine and the DPO trainer agree on {agreed} sampled prompts")
    return engine


def load_images_checked(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    prompts: pl.DataFrame,
    stage: str,
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]], pl.DataFrame]:
    """Decode the prompts' images; quarantine failures and fail above `max_bad_fraction`."""
    category = context.partition_key if context.has_partition_key else "all"
    loaded, images, refused = quarantine.load_prompt_images(
        store, prompts, stage=stage, category=category, max_pixels=config.max_image_pixels
    )
    store.write_table("quarantine", f"{stage}/{category}", refused, schemas.QUARANTINE)
    bad_fraction = refused.height / max(prompts.height, 1)
    if bad_fraction > config.max_bad_fraction:
        raise ValueError(
            f"{stage}[{category}]: {refused.height} of {prompts.height} prompts have unusable images "
            f"({quarantine.reason_counts(refused)}), above max_bad_fraction={config.max_bad_fraction}. "
            f"See {store.table_uri('quarantine', f'{stage}/{category}')}; fix or remove those images, "
            "or raise max_bad_fraction"
        )
    if refused.height:
        context.log.warning(f"{stage}[{category}]: quarantined {refused.height} prompts: {quarantine.reason_counts(refused)}")
    return loaded, images, refused


def train_pairs(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    pairs: pl.DataFrame,
    base_dir: Path,
    asset: str,
    key: str,
    beta: float,
) -> dict:
    """DPO of the base model on `pairs` into the store's checkpoint `<asset>/<key>`; returns the metadata to show."""
    import torch

    from vlm_rl_assets.core.training import DPOSettings, PreferencePair, dpo_train

    torch.set_num_threads(config.model.torch_threads)
    pairs, images, refused = load_images_checked(context, config, store, pairs, asset)
    train = config.training
    settings = DPOSettings(
        beta=beta,
        learning_rate=train.learning_rate,
        batch_size=train.batch_size,
        epochs=train.epochs,
        seed=train.seed,
        loss_type=train.loss_type,
    )
    examples = [
        PreferencePair(row["prompt_text"], imgs, row["chosen"], row["rejected"])
        for row, imgs in zip(pairs.iter_rows(named=True), images)
    ]
    with store.staged_dir(asset, key) as out_dir:
        result = dpo_train(base_dir, out_dir, examples, settings, log=context.log.info)
    logged = [entry for entry in result.history if "loss" in entry]
    curve = pl.DataFrame(logged).select(c for c in CURVE_COLUMNS if c in logged[0])
    return {
        "uri": dg.MetadataValue.path(store.checkpoint_uri(asset, key)),
        "pairs": pairs.height,
        "quarantined_pairs": refused.height,
        "steps": result.steps,
        "beta": beta,
        **{f"final/{name}": float(value) for name, value in result.final.items()},
        "curve": markdown_table(curve, 20),
    }


def bench_scores(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    models: dict[str, Path],
    categories: list[str],
) -> pl.DataFrame:
    """Greedy benchmark of each named model on the bench split of `categories` (BENCHMARK_SCORES rows)."""
    from vlm_rl_assets.core.evaluation import greedy_verdicts, summarize

    prompts = pl.concat(
        [store.read_table("prompt_mixture", c, schemas.PROMPTS).filter(pl.col("split") == "bench") for c in categories]
    )
    prompts, images, _ = load_images_checked(context, config, store, prompts, "benchmark")
    summaries = []
    for name, model_dir in models.items():
        verdicts = greedy_verdicts(
            open_engine(config, model_dir), prompts, images, config.eval.max_new_tokens, progress_logger(context, f"bench {name}")
        )
        summaries.append(summarize(verdicts, name))
    return schemas.check(pl.concat(summaries), schemas.BENCHMARK_SCORES, "benchmark_scores")


def compare(scores: pl.DataFrame, candidate: str) -> pl.DataFrame:
    """Per category and metric: base, candidate and delta side by side."""
    wide = scores.pivot(on="model", index=["category", "metric"], values="value")
    return wide.with_columns(delta=pl.col(candidate) - pl.col("base")).sort("metric", "category")
