"""What both training assets share: the models a round trains from and against, and what they show of a run, DPO or
GRPO: its metadata (curves included) and its `training_health` check."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.dpo.train_pairs import TrainedCheckpoint
from vlm_rl_assets.grpo.train_prompts import TrainedPolicy
from vlm_rl_assets.names import TRAINING_HEALTH
from vlm_rl_assets.orchestration.curves import GRPO_PANELS, curves_markdown
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.ui import markdown_table, readable_metadata
from vlm_rl_assets.readable import rounded, seconds_value
from vlm_rl_assets.training.health import Health


def round_models(pipeline: PipelineResource, pipeline_round: int) -> tuple[Path, Path]:
    """(start, reference) of a round's training: the model its rollouts came from (round 1: the base; round r: round
    r-1's policy), and DPO's reference per `rounds.reference`, that model or the base."""
    start = pipeline.start_model_dir(pipeline_round)
    return start, pipeline.base_model_dir() if pipeline.config.rounds.reference == "base" else start


def health_check_spec(asset: str) -> dg.AssetCheckSpec:
    """The training-health check of a training asset (a warning: the checkpoint is kept)."""
    return dg.AssetCheckSpec(
        TRAINING_HEALTH,
        asset=asset,
        description="DPO: no NaN loss, no collapse or steady fall of logps/chosen, no early saturation of "
        "rewards/accuracies, no drift of the mean generated length (dpo/health.py). GRPO: no NaN loss, groups with "
        "reward spread, bounded KL, completion length neither collapsing nor growing, completions not cut off "
        "(grpo/health.py)",
    )


def health_check(context: dg.AssetExecutionContext, health: Health, label: str) -> dg.AssetCheckResult:
    """Failed (WARN: the checkpoint stays) when any alarm fires, each also logged."""
    for alarm in health.alarms:
        context.log.warning(f"{label}: {alarm}")
    return dg.AssetCheckResult(
        check_name=TRAINING_HEALTH,
        passed=not health.alarms,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=readable_metadata({"alarms": health.alarms, **health.metrics}),
    )


def training_metadata(trained: TrainedCheckpoint, quarantined: pl.DataFrame) -> dict:
    result, pairs, curve = trained.result, trained.pairs, trained.curve()
    last = result.history[-1]
    return {
        "uri": dg.MetadataValue.path(trained.uri),
        "algorithm": "dpo",
        "pairs": pairs.height,
        "quarantined_pairs": quarantined.height,
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        **_runtime(last),
        "beta_per_category": dict(pairs.group_by("category").agg(pl.col("beta").first()).sort("category").iter_rows()),
        "loss_type": ", ".join(trained.loss.loss_type),
        "reference_logps_computed": trained.reference_logps_computed,
        **{f"final/{name}": float(value) for name, value in result.final.items()},
        "curves": dg.MetadataValue.md(curves_markdown(curve)),
        "curve": markdown_table(curve, 20),
    }


def grpo_training_metadata(trained: TrainedPolicy, quarantined: pl.DataFrame) -> dict:
    result, curve, grpo = trained.result, trained.curve(), trained.grpo
    last = result.history[-1]
    return {
        "uri": dg.MetadataValue.path(trained.uri),
        "algorithm": "grpo",
        "prompts": trained.prompts.height,
        "prompts_per_category": dict(trained.prompts.group_by("category").len().sort("category").iter_rows()),
        "quarantined_prompts": quarantined.height,
        "steps": result.steps,
        **_runtime(last),
        "num_generations": grpo.num_generations,
        "loss_type": grpo.loss_type,
        "kl_beta": grpo.beta,
        "completions_judged": trained.judged,
        "judge_failures": trained.failures.height,  # left out of their groups (reward None), never scored 0
        "judge_failures_by_reason": trained.failure_counts,
        **{f"final/{name}": float(value) for name, value in result.final.items() if value is not None},
        "curves": dg.MetadataValue.md(curves_markdown(curve, GRPO_PANELS)),
        "curve": markdown_table(curve, 20),
    }


def _runtime(last: dict) -> dict:
    """The Trainer's last log's runtime (seconds to 0.1) and steps per second, where it has them."""
    shown = {"train_runtime": seconds_value, "train_steps_per_second": rounded}
    return {key: show(last[key]) for key, show in shown.items() if key in last}
