"""rollouts[c]: N seeded samples per train prompt from the policy itself (on-policy: the base model in round 1, round
r-1's mixture policy in round r), in resumable shards."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.names import BASE_MODEL, PROMPT_MIXTURE, ROLLOUTS
from vlm_rl_assets.orchestration.chance_refusal import refuse_at_chance
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.review_page import review_page
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import Progress, markdown_table
from vlm_rl_assets.readable import rounded
from vlm_rl_assets.rollouts import diversity
from vlm_rl_assets.rollouts.engine import SamplingParams
from vlm_rl_assets.rollouts.open import open_checked_engine
from vlm_rl_assets.rollouts.shards import sharded_rollouts
from vlm_rl_assets.store import quarantine, schemas


@dg.asset(
    pool=GPU_POOL,
    deps=[PROMPT_MIXTURE, BASE_MODEL],
    group_name="rollouts",
    kinds={"pytorch", "parquet"},
    description="N samples per train prompt from the policy (round 1: the base model; round r: round r-1's mixture "
    "policy), in resumable shards; per-group diversity.",
)
@asset_step
def rollouts(context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    category, key = part.category, part.key()
    cat = config.category(category)
    refuse_at_chance(config, store, category, ROLLOUTS)
    model_dir = pipeline.start_model_dir(part.pipeline_round)
    prompts = store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS).filter(pl.col("split") == "train")
    prompts, images, refused = load_images(context, config, store, prompts, ROLLOUTS)
    params = SamplingParams(
        n=cat.samples_per_prompt,
        temperature=config.engine.temperature,
        top_p=config.engine.top_p,
        max_new_tokens=config.engine.max_new_tokens,
        seed=config.engine.seed,
    )
    progress = Progress(context, f"rollouts[{key}] shards")
    with open_checked_engine(
        config.engine, config.model, model_dir, prompts["prompt_text"], images, context.log.info
    ) as engine:  # closed before the diversity embedder loads
        sampled = sharded_rollouts(
            engine,
            store,
            key,
            prompts,
            images,
            params,
            model_fingerprint(model_dir),
            shard_prompts=config.engine.shard_prompts,
            temperatures=config.engine.temperatures,
            progress=progress,
            log=context.log.info,
        )
    table = sampled.table
    groups = _diversity(context, config.model.device, table)
    store.write_table(ROLLOUTS, f"{key}/diversity", groups, schemas.ROLLOUT_DIVERSITY)
    metadata = {
        "rows": table.height,
        "prompts": prompts.height,
        "samples_per_prompt": params.n,
        "rows_by_temperature": {str(t): n for t, n in table.group_by("temperature").len().sort("temperature").rows()},
        "shards_reused": len(sampled.reused),
        "shards_generated": len(sampled.generated),
        "shard_prompts": config.engine.shard_prompts,
        "fingerprint": sampled.manifest["fingerprint"][0],
        "quarantined_prompts": refused.height,
        "quarantined_by_reason": quarantine.reason_counts(refused),
        "generated_tokens": sampled.generated_tokens,
        "mean_response_tokens": rounded(table["n_tokens"].mean(), 1),
        "finish_reasons": dict(table.group_by("finish_reason").len().iter_rows()),
        **{f"diversity/{m}": float(groups[m].mean()) for m in diversity.measured(groups)},
        "diversity_histogram": markdown_table(diversity.histogram(groups)),
        "policy_id": sampled.manifest["policy_id"][0],
        "round": part.pipeline_round,
        "review_page": review_page(store, part, ROLLOUTS),
        **progress.metadata("shards"),  # this run's sampled shards: done, seconds, per_second
    }
    if sampled.generated:
        metadata["tokens_per_second"] = round(sampled.generated_tokens / sampled.generate_seconds, 1)
    return dg.MaterializeResult(metadata=metadata)


def _diversity(context: dg.AssetExecutionContext, device: str, table: pl.DataFrame) -> pl.DataFrame:
    """Per-group diversity; the embedding distance only with the `diversity` extra installed."""
    embed = diversity.load_embedder(device)
    if embed is None:
        context.log.info("no embedding distance: install the `diversity` extra (pip install -e '.[diversity]') for it")
    start = time.monotonic()
    groups = diversity.group_diversity(table, embed)
    context.log.info(f"diversity of {groups.height} groups in {time.monotonic() - start:.1f}s")
    return groups
