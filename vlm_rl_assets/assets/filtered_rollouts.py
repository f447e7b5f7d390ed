"""filtered_rollouts[c]: every rollout scored by the category's judge, kept or dropped with its reason;
rollouts the judge failed on are quarantined with the failure's reason (never scored 0)."""

import dagster as dg
import polars as pl

from vlm_rl_assets.judging.answers import format_compliance
from vlm_rl_assets.judging.gaming import rollout_gaming
from vlm_rl_assets.judging.open import open_judge
from vlm_rl_assets.judging.scoring import quarantine_failures, score_rollouts
from vlm_rl_assets.names import FILTERED_ROLLOUTS, PROMPT_MIXTURE, ROLLOUTS
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.review_page import review_page
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.pairs.filtering import drop_counts, filter_rollouts
from vlm_rl_assets.store import schemas


@dg.asset(
    deps=[ROLLOUTS],
    group_name="rollouts",
    kinds={"polars", "parquet"},
    description="Rollouts scored by the category's judge; short, duplicate, low-diversity and no-right/wrong-split "
    "groups dropped with reasons; rollouts the judge failed on quarantined.",
)
@asset_step
def filtered_rollouts(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    category, key = part.category, part.key()
    prompts = store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS)
    rollouts = store.read_table(ROLLOUTS, key, schemas.ROLLOUTS)
    cat = config.category(category)
    judge = open_judge(cat.judge, config.judges, config.model, store.load_image, cat.strict_format)
    judged = score_rollouts(rollouts, prompts, judge)
    quarantine_failures(store, key, judged, rollouts.height, cat.judge, config.max_bad_fraction, context.log.warning)
    filtered = filter_rollouts(judged.scored, cat.min_response_words, cat.min_group_diversity)
    store.write_table(FILTERED_ROLLOUTS, key, filtered, schemas.FILTERED_ROLLOUTS)
    group_pass_rate = filtered.group_by("prompt_id").agg(pl.col("correct").mean())["correct"]
    kept_groups = filtered.filter("kept")["prompt_id"].n_unique()
    return dg.MaterializeResult(
        metadata={
            "rows": filtered.height,
            "rows_by_outcome": drop_counts(filtered),
            "groups_kept": kept_groups,
            "groups_total": filtered["prompt_id"].n_unique(),
            "sample_accuracy": float(filtered["correct"].mean()),
            "mean_score": float(filtered["score"].mean()),
            "groups_all_right": int((group_pass_rate == 1.0).sum()),
            "groups_all_wrong": int((group_pass_rate == 0.0).sum()),
            "judge": cat.judge,
            "review_page": review_page(store, part, FILTERED_ROLLOUTS),
            "strict_format": cat.strict_format,
            # share of rollouts with an 'Answer:' line or \boxed{}, the form the cot template instructs
            **(
                {"format_compliance": round(format_compliance(rollouts["response"]), 3)}
                if cat.template == "cot"
                else {}
            ),
            # share of rollouts per gaming pattern: the hack monitor's baseline before DPO
            "gaming": rollout_gaming(rollouts, prompts, config.eval.length_outlier_factor),
            "judge_failures": len(judged.failures),
            "judge_failures_by_reason": judged.failure_counts,
            **{f"judge_{name}": value for name, value in judged.metrics.items()},  # vlm: consistency, rank_agreement
        }
    )
