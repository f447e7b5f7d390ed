"""The `training_health` check of a DPO checkpoint: alarms from TRL's curves and from a length probe (greedy
generations of base and trained model on a few training prompts), reported as a WARN with its numbers, since
the curves alone cannot show "longer wins" and the probe needs both models at hand, which only training has."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl
from PIL import Image

from vlm_rl_assets.assets.runtime import HEALTH_CHECK, open_engine
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.dpo.health import HealthThresholds, Lengths, training_health


def probe_lengths(
    config: PipelineConfig, base_dir: Path, model_dir: Path, pairs: pl.DataFrame, images: Sequence[tuple[Image.Image, ...]]
) -> Lengths | None:
    """Mean words of the pairs' halves and mean greedy tokens of base vs. trained model on the first
    `training_health.length_sample` distinct prompts of `pairs` (by prompt_id); None when the sample is 0."""
    from vlm_rl_assets.rollouts.engine import GenerationRequest, SamplingParams

    size = config.training_health.length_sample
    if size == 0:
        return None
    first = {}
    for i, prompt_id in sorted(enumerate(pairs["prompt_id"]), key=lambda item: item[1]):
        first.setdefault(prompt_id, i)
    sample = list(first.values())[:size]
    requests = [GenerationRequest(pairs["prompt_text"][i], images[i]) for i in sample]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=config.engine.max_new_tokens, seed=config.engine.seed)

    def mean_tokens(model: Path) -> float:
        completions = open_engine(config, model).generate(requests, greedy)
        return statistics.fmean(completion.n_tokens for (completion,) in completions)

    def mean_words(column: str) -> float:
        return statistics.fmean(len(text.split()) for text in pairs[column])

    return Lengths(mean_words("chosen"), mean_words("rejected"), mean_tokens(base_dir), mean_tokens(model_dir))


def health_check(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    history: list[dict[str, float]],
    lengths: Lengths | None,
    label: str,
) -> dg.AssetCheckResult:
    """The check result of a run: failed (WARN: the checkpoint stays) when any alarm fires, each also logged."""
    thresholds = HealthThresholds(**config.training_health.model_dump(exclude={"length_sample"}))
    health = training_health(history, thresholds, lengths)
    for alarm in health.alarms:
        context.log.warning(f"{label}: {alarm}")
    return dg.AssetCheckResult(
        check_name=HEALTH_CHECK,
        passed=not health.alarms,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"alarms": health.alarms, **health.metrics},
    )
