"""rollouts[c]: N seeded samples per train prompt from the base model itself (on-policy)."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.runtime import load_images_checked, open_engine
from vlm_rl_assets.assets.ui import progress_logger
from vlm_rl_assets.core import quarantine, schemas
from vlm_rl_assets.core.engine import SamplingParams
from vlm_rl_assets.core.rollouts import model_fingerprint, sample_rollouts
from vlm_rl_assets.partitions import category_partitions
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["prompt_mixture", "base_model"],
    group_name="rollouts",
    kinds={"pytorch", "parquet"},
    description="N samples per train prompt from the base model (sampled, seeded, batched generate).",
)
def rollouts(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    category = context.partition_key
    config, store = pipeline.config(), pipeline.store()
    cat = config.category(category)
    model_dir = pipeline.base_model_dir()
    prompts = store.read_table("prompt_mixture", category, schemas.PROMPTS).filter(pl.col("split") == "train")
    prompts, images, refused = load_images_checked(context, config, store, prompts, "rollouts")
    params = SamplingParams(
        n=cat.samples_per_prompt,
        temperature=config.engine.temperature,
        top_p=config.engine.top_p,
        max_new_tokens=config.engine.max_new_tokens,
        seed=config.engine.seed,
    )
    engine = open_engine(config, model_dir)
    start = time.monotonic()
    table = sample_rollouts(engine, prompts, images, params, model_fingerprint(model_dir), progress_logger(context, "rollouts"))
    seconds = time.monotonic() - start
    store.write_table("rollouts", category, table, schemas.ROLLOUTS)
    tokens = int(table["n_tokens"].sum())
    return dg.MaterializeResult(
        metadata={
            "rows": table.height,
            "prompts": prompts.height,
            "samples_per_prompt": params.n,
            "quarantined_prompts": refused.height,
            "quarantined_by_reason": quarantine.reason_counts(refused),
            "generated_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
            "mean_response_tokens": float(table["n_tokens"].mean()),
            "finish_reasons": dict(table.group_by("finish_reason").len().iter_rows()),
            "distinct_responses_per_group": float(table.group_by("prompt_id").agg(pl.col("response").n_unique())["response"].mean()),
            "policy_id": table["policy_id"][0],
        }
    )
