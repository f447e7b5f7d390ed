"""Shared steps of the model-running assets: thread count, a table's images, opening and pre-flight checking an
engine, opening a category's judge."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
from PIL import Image

from vlm_rl_assets.assets.ui import Progress, markdown_table
from vlm_rl_assets.config import LossConfig, PipelineConfig
from vlm_rl_assets.store import quarantine, schemas
from vlm_rl_assets.store.base import Store

if TYPE_CHECKING:
    from vlm_rl_assets.rollouts.engine import Engine
    from vlm_rl_assets.judging.contract import RolloutJudge

HEALTH_CHECK = "training_health"
CURVE_COLUMNS = ("step", "loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


def open_engine(config: PipelineConfig, model_dir: Path) -> Engine:
    """The rollout engine `engine.kind` names, on `model_dir` (torch threads set first: heavy imports happen here)."""
    import torch

    from vlm_rl_assets.rollouts.engine import HFEngine
    from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine

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


def open_judge(config: PipelineConfig, category: str, store: Store) -> RolloutJudge:
    """The judge `categories.<c>.judge` names with its `judges:` settings; the VLM judge's API key only
    from the environment variable `judges.vlm.api_key_env` names, so it never lands in config or metadata."""
    from vlm_rl_assets.judging.rules import RuleSettings
    from vlm_rl_assets.judging.contract import RuleJudge

    kind, judges = config.category(category).judge, config.judges
    if kind == "vlm":
        from vlm_rl_assets.judging.vlm_judge import VLMJudge, VLMJudgeSettings

        api_key = os.environ.get(judges.vlm.api_key_env, "")
        settings = VLMJudgeSettings(**judges.vlm.model_dump(exclude={"api_key_env"}), api_key=api_key)
        return VLMJudge(settings, load_image=store.load_image)
    if kind == "reward_model":
        import torch

        from vlm_rl_assets.judging.reward_judge import RewardModelJudge, RewardModelSettings

        torch.set_num_threads(config.model.torch_threads)
        return RewardModelJudge(RewardModelSettings(**judges.reward_model.model_dump(), device=config.model.device))
    return RuleJudge(RuleSettings(**judges.rule.model_dump()), name=kind)


def open_checked_engine(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    model_dir: Path,
    prompts: pl.DataFrame,
    images: list[tuple[Image.Image, ...]],
) -> Engine:
    """`open_engine`, then the pre-flight check that it tokenizes `prompts` exactly as the DPO trainer will."""
    from vlm_rl_assets.rollouts.engine import GenerationRequest
    from vlm_rl_assets.rollouts.preflight import check_agreement

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
    loss: LossConfig,
) -> tuple[dict, dg.AssetCheckResult]:
    """DPO of the base model on `pairs` into the store's checkpoint `<asset>/<key>`, each pair with its category's
    beta and the base model's cached reference log-probs (the base model is the reference with LoRA too), on
    `training.num_processes` processes, resumable from its work folder, which goes once the checkpoint is published;
    returns the metadata to show and the health check."""
    import torch

    from vlm_rl_assets.assets.health import health_check, probe_lengths
    from vlm_rl_assets.assets.curves import curves_markdown
    from vlm_rl_assets.dpo.job import DPOJob, write_job
    from vlm_rl_assets.dpo.launch import launch_job
    from vlm_rl_assets.dpo.reference_cache import with_reference_logps
    from vlm_rl_assets.rollouts.sampling import model_fingerprint
    from vlm_rl_assets.store.base import DEFAULT_CACHE_DIR
    from vlm_rl_assets.dpo.training import DPOSettings, LoRASettings, PreferencePair, reference_logps

    torch.set_num_threads(config.model.torch_threads)
    pairs, images, refused = load_images_checked(context, config, store, pairs, asset)
    betas = {c: config.category(c).beta for c in pairs["category"].unique()}  # today's config, not the table's
    pairs = pairs.with_columns(beta=pl.col("category").replace_strict(betas, return_dtype=pl.Float64))
    examples = [
        PreferencePair(row["prompt_text"], imgs, row["chosen"], row["rejected"], beta=row["beta"])
        for row, imgs in zip(pairs.iter_rows(named=True), images)
    ]
    train = config.training
    fingerprint = model_fingerprint(base_dir)
    pairs, computed = with_reference_logps(
        store,
        fingerprint,
        pairs,
        lambda rows: reference_logps(base_dir, [examples[i] for i in rows], batch_size=train.batch_size),
    )
    context.log.info(f"reference log-probs: {computed} computed, {pairs.height - computed} read from the cache")
    examples = [
        dataclasses.replace(ex, ref_chosen_logps=chosen, ref_rejected_logps=rejected)
        for ex, chosen, rejected in zip(examples, pairs["ref_chosen_logps"], pairs["ref_rejected_logps"])
    ]
    settings = DPOSettings(
        learning_rate=train.learning_rate,
        batch_size=train.batch_size,
        epochs=train.epochs,
        seed=train.seed,
        loss_type=tuple(loss.loss_type),
        loss_weights=tuple(loss.loss_weights) if loss.loss_weights is not None else None,
        lora=LoRASettings(**train.lora.model_dump()) if train.lora is not None else None,
        freeze_vision_tower=train.freeze_vision_tower,
        save_steps=train.save_steps,
    )
    work_root = Path(train.work_dir or Path(config.storage.cache_dir or DEFAULT_CACHE_DIR) / "training") / asset / key
    threads = max(1, config.model.torch_threads // train.num_processes)  # the processes share the CPU
    with store.staged_dir(asset, key) as out_dir:
        job = DPOJob(str(base_dir), str(out_dir), settings, torch_threads=threads, num_processes=train.num_processes)
        job_dir = write_job(work_root, job, examples, fingerprint)
        context.log.info(f"training in {job_dir} on {train.num_processes} process(es); a rerun resumes there")
        result = launch_job(job_dir, job, config.model.device, context.log.info)
        lengths = probe_lengths(config, base_dir, out_dir, pairs, images)
    shutil.rmtree(job_dir)  # published: nothing left to resume
    logged = [entry for entry in result.history if "loss" in entry]
    curve = pl.DataFrame(logged).select(c for c in CURVE_COLUMNS if c in logged[0])
    health = health_check(context, config, result.history, lengths, f"{asset}[{key}]")
    return {
        "uri": dg.MetadataValue.path(store.checkpoint_uri(asset, key)),
        "pairs": pairs.height,
        "quarantined_pairs": refused.height,
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        **{key: result.history[-1][key] for key in ("train_runtime", "train_steps_per_second") if key in result.history[-1]},
        "beta_per_category": dict(pairs.group_by("category").agg(pl.col("beta").first()).sort("category").iter_rows()),
        "loss_type": ", ".join(loss.loss_type),
        "reference_logps_computed": computed,
        **{f"final/{name}": float(value) for name, value in result.final.items()},
        "curves": dg.MetadataValue.md(curves_markdown(curve)),
        "curve": markdown_table(curve, 20),
    }, health


def health_check_spec(asset: str) -> dg.AssetCheckSpec:
    """The training-health check `train_pairs` reports on a training asset (a warning: the checkpoint is kept)."""
    return dg.AssetCheckSpec(
        HEALTH_CHECK,
        asset=asset,
        description="no NaN loss, no collapse or steady fall of logps/chosen, no early saturation of rewards/accuracies, "
        "no drift of the mean generated length (dpo/health.py)",
    )


def bench_scores(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    models: dict[str, Path],
    categories: list[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each named model on the bench split of `categories`: greedy plus `eval.samples_per_prompt` sampled responses
    per prompt. Returns the BENCHMARK_SCORES rows and the greedy verdicts (with `model`) for paired deltas."""
    from vlm_rl_assets.rollouts.engine import SamplingParams
    from vlm_rl_assets.evaluation.benchmarks import greedy_verdicts, sampled_correct, summarize

    prompts = pl.concat(
        [store.read_table("prompt_mixture", c, schemas.PROMPTS).filter(pl.col("split") == "bench") for c in categories]
    )
    prompts, images, _ = load_images_checked(context, config, store, prompts, "benchmark")
    ev = config.eval
    sampling = SamplingParams(
        n=ev.samples_per_prompt, temperature=ev.temperature, max_new_tokens=ev.max_new_tokens, seed=config.engine.seed
    )
    summaries, all_verdicts = [], []
    for name, model_dir in models.items():
        engine = open_engine(config, model_dir)
        verdicts = greedy_verdicts(engine, prompts, images, ev.max_new_tokens, Progress(context, f"bench {name}"))
        sampled = sampled_correct(engine, prompts, images, sampling, Progress(context, f"bench {name} pass@k"))
        summaries.append(summarize(verdicts, sampled, ev.samples_per_prompt, name, config.engine.seed))
        all_verdicts.append(verdicts.with_columns(model=pl.lit(name)))
    return schemas.check(pl.concat(summaries), schemas.BENCHMARK_SCORES, "benchmark_scores"), pl.concat(all_verdicts)


def compare(scores: pl.DataFrame, candidate: str) -> pl.DataFrame:
    """Per category and metric: base and candidate (each with its CI) and the delta side by side."""
    wide = scores.pivot(on="model", index=["category", "metric"], values=["value", "ci_low", "ci_high"])
    return (
        wide.select(
            "category",
            "metric",
            *(
                pl.col(f"{column}_{model}").alias(model + suffix)
                for model in ("base", candidate)
                for column, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
            ),
        )
        .with_columns(delta=pl.col(candidate) - pl.col("base"))
        .sort("metric", "category")
    )
