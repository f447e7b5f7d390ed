"""The GRPO step of grpo_checkpoint[c] and, under `training.algorithm: grpo`, of policy_checkpoint: GRPO on the
categories' train prompts (for the policy, their balanced mixture), each completion rewarded by its category's judge,
into a `save_pretrained` folder as DPO's."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.grpo.reward import JudgeReward
from vlm_rl_assets.grpo.train_prompts import train_prompts
from vlm_rl_assets.judging.open import open_judge
from vlm_rl_assets.names import PROMPT_MIXTURE
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.training_run import grpo_training_metadata, health_check
from vlm_rl_assets.store import schemas
from vlm_rl_assets.training.mixture import policy_mixture


def train_grpo(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    asset: str,
    key: str,
    categories: list[str],
    start_dir: Path,
) -> dg.MaterializeResult:
    """GRPO of `start_dir` (the round's start: the base in round 1) on `categories`' train prompts into `<asset>/<key>`:
    one category's, or with several the balanced mixture (`mixture_weight`) of theirs; its KL reference is its start."""
    config, store = pipeline.config, pipeline.store
    tables = {c: store.read_table(PROMPT_MIXTURE, c, schemas.PROMPTS) for c in categories}
    train = {c: table.filter(pl.col("split") == "train") for c, table in tables.items()}
    weights = {c: config.category(c).mixture_weight for c in categories}
    settings, grpo = config.grpo_settings()
    prompts = train[categories[0]] if len(categories) == 1 else policy_mixture(train, weights, settings)
    loaded, images, refused = load_images(context, config, store, prompts, asset)
    judged = {c: config.category(c) for c in loaded["category"].unique(maintain_order=True)}  # weight 0: left out
    judge_settings = config.judges.model_dump(mode="json")  # keys a GRPO run's work folder: a change starts afresh
    rewards = [
        JudgeReward(
            c,
            open_judge(cat.judge, config.judges, config.model, store.load_image, cat.strict_format),
            tables[c],
            judge_settings={"kind": cat.judge, "strict_format": cat.strict_format, "judges": judge_settings},
        )
        for c, cat in judged.items()
    ]
    trained = train_prompts(
        store,
        loaded,
        images,
        rewards,
        start_dir,
        asset,
        key,
        settings,
        grpo,
        model=config.model,
        health=config.training_health,
        max_bad_fraction=config.max_bad_fraction,
        cache_dir=config.storage.cache_path,
        log=context.log.info,
    )
    return dg.MaterializeResult(
        metadata=grpo_training_metadata(trained, refused),
        check_results=[health_check(context, trained.health, f"{asset}[{key}]")],
    )
