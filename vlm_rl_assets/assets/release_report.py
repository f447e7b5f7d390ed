"""release_report: base vs. the mixture policy (with rounds, the round's) on every category's held-out split (eval.split:
bench to promote), the overall paired delta with its CI, pass@k curves, and the promotion gate on them (`evaluation/promotion.py`'s rule, shared with promoted_policy,
which acts on it)."""

import time

import dagster as dg
import polars as pl

from vlm_rl_assets.evaluation.benchmarks import compare
from vlm_rl_assets.evaluation.cost_report import Gain, cost_table, for_people, gain_per_cost
from vlm_rl_assets.evaluation.hack_monitor import gaming_shares
from vlm_rl_assets.evaluation.promotion import CANDIDATE
from vlm_rl_assets.evaluation.stats import OVERALL, paired_deltas
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.names import (
    EXTERNAL_BENCHMARKS,
    POLICY_CHECKPOINT,
    POLICY_KEY,
    PROMOTED_POLICY,
    PROMPT_MIXTURE,
    RELEASE_REPORT,
)
from vlm_rl_assets.orchestration.benchmarking import benchmark, flagged_bench
from vlm_rl_assets.orchestration.curves import pass_at_k_markdown
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import markdown_table
from vlm_rl_assets.readable import delta_points, deltas_in_points, scores_as_read, seconds_value
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.costs import latest_costs

# not part of what the gain cost: this report itself and what comes after it (their rows are a previous release's)
NOT_COSTED = (RELEASE_REPORT, PROMOTED_POLICY, EXTERNAL_BENCHMARKS)
MODELS = ["base", CANDIDATE]


@dg.asset(
    pool=GPU_POOL,
    deps=[POLICY_CHECKPOINT, PROMPT_MIXTURE],
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    description="Base vs. policy greedy accuracy per category and overall (paired delta, 95% CI), pass@k curves, "
    "and what the gain cost: each stage's cost per category and the points per M generated tokens and per hour.",
)
@asset_step
def release_report(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    policy_dir = store.local_checkpoint(POLICY_CHECKPOINT, part.key(POLICY_KEY))
    models = {"base": pipeline.base_model_dir(), CANDIDATE: policy_dir}
    start = time.monotonic()
    scores, verdicts = benchmark(context, config, store, models, list(config.categories))
    store.write_table(RELEASE_REPORT, part.key("scores"), scores, schemas.BENCHMARK_SCORES)
    deltas = paired_deltas(verdicts, CANDIDATE, seed=config.engine.seed)
    store.write_table(RELEASE_REPORT, part.key("deltas"), deltas, schemas.BENCHMARK_DELTAS)
    store.write_table(RELEASE_REPORT, part.key("verdicts"), verdicts, schemas.BENCHMARK_VERDICTS)
    # last: until a run's tables are all written, the candidate names the previous checkpoint and the gate refuses
    candidate = {
        "policy_id": [model_fingerprint(policy_dir)],
        "checkpoint_uri": [store.checkpoint_uri(POLICY_CHECKPOINT, part.key(POLICY_KEY))],
        "split": [config.eval.split],
    }
    store.write_table(RELEASE_REPORT, part.key("candidate"), pl.DataFrame(candidate), schemas.RELEASE_CANDIDATE)
    table = compare(scores, CANDIDATE)
    greedy = table.filter(~pl.col("metric").str.starts_with("pass@"))
    accuracy = table.filter(pl.col("metric") == "accuracy")
    overall = deltas.filter(pl.col("category") == OVERALL).row(0, named=True)
    pass_at_k = table.filter(pl.col("metric").str.starts_with("pass@")).with_columns(
        k=pl.col("metric").str.strip_prefix("pass@").cast(pl.Int64)
    )
    curves = pass_at_k.group_by("k").agg(pl.col("base", "policy").mean()).sort("k")  # mean over categories
    # what reaching this policy cost: every round up to this one
    spent = latest_costs(store).filter(~pl.col("asset").is_in(NOT_COSTED) & (pl.col("round") <= part.pipeline_round))
    costs = cost_table(spent)
    gain = gain_per_cost(overall["delta"], costs.row(-1, named=True))
    return dg.MaterializeResult(
        metadata={
            # the headline: paired, mean over categories, in points with its 95% CI (the fractions below, rounded)
            "mean_delta": delta_points(overall["delta"], overall["ci_low"], overall["ci_high"]),
            "mean_base_accuracy": float(accuracy["base"].mean()),
            "mean_policy_accuracy": float(accuracy["policy"].mean()),
            "policy_id": candidate["policy_id"][0],
            "split": config.eval.split,
            "mean_delta_accuracy": overall["delta"],
            "mean_delta_accuracy_ci": [overall["ci_low"], overall["ci_high"]],
            "worst_category_delta": float(deltas.filter(pl.col("category") != OVERALL)["delta"].min()),
            "deltas": markdown_table(deltas_in_points(deltas), 50),
            "pass_at_k_curves": dg.MetadataValue.md(
                pass_at_k_markdown({"base": curves["base"].to_list(), "policy": curves["policy"].to_list()})
            ),
            "report": markdown_table(scores_as_read(greedy, MODELS), 50),
            # share of greedy responses per gaming pattern; the gaming_monitor check warns on its rise
            "gaming": markdown_table(
                gaming_shares(flagged_bench(config, store, verdicts, list(config.categories))), 50
            ),
            "bench_seconds": seconds_value(time.monotonic() - start),  # every model on every bench prompt
            # what the gain cost: every upstream asset's latest materialization per category (store/costs.py)
            "costs": markdown_table(for_people(costs), 100),
            "gain": gain.summary(),
            "gain/hour": gain.hour,  # accelerator-hour, or CPU-hour where the stages held no accelerator
            **gain_metadata(gain),
        }
    )


def gain_metadata(gain: Gain) -> dict[str, float]:
    """The rates to three significant digits; a rate whose cost was zero is left out."""
    rates = {"points_per_million_generated_tokens": gain.per_million_generated_tokens, "points_per_hour": gain.per_hour}
    return {f"gain/{name}": float(f"{rate:.3g}") for name, rate in rates.items() if rate is not None}
