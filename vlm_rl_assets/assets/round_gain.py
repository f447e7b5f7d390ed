"""round_gain[r]: what round r gained on the dev split over the model it started from, and whether round r+1 runs
(`rounds/plan.py`'s stop rule: a gain below `rounds.min_gain` or a failed promotion gate ends the rounds)."""

import dagster as dg
import polars as pl

from vlm_rl_assets.evaluation.promotion import CANDIDATE
from vlm_rl_assets.evaluation.stats import OVERALL, paired_deltas
from vlm_rl_assets.names import POLICY_CHECKPOINT, POLICY_KEY, RELEASE_REPORT
from vlm_rl_assets.orchestration.benchmarking import benchmark
from vlm_rl_assets.orchestration.gate import gate
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.training_run import round_models
from vlm_rl_assets.rounds.plan import RoundOutcome, write_outcome

NEXT_ROUND_RUNS = "next_round_runs"  # the metadata entry the next-round sensor reads


@dg.asset(
    pool=GPU_POOL,
    deps=[RELEASE_REPORT],
    group_name="rounds",
    kinds={"pytorch", "parquet"},
    description="The round's policy vs. the model the round started from on the dev split (paired delta, 95% CI), "
    "with its promotion gate: whether the next round runs.",
)
@asset_step
def round_gain(context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    start, _ = round_models(pipeline, part.pipeline_round)
    policy = store.local_checkpoint(POLICY_CHECKPOINT, part.key(POLICY_KEY))
    dev = config.eval.model_copy(update={"split": "dev"})  # where the stop rule is chosen; bench stays for reports
    _, verdicts = benchmark(context, config, store, {"base": start, CANDIDATE: policy}, list(config.categories), dev)
    overall = (
        paired_deltas(verdicts, CANDIDATE, seed=config.engine.seed)
        .filter(pl.col("category") == OVERALL)
        .row(0, named=True)
    )
    decision = gate(config, store, part.pipeline_round)
    outcome = RoundOutcome(
        part.pipeline_round,
        100 * overall["delta"],
        (100 * overall["ci_low"], 100 * overall["ci_high"]),
        config.rounds.min_gain,
        tuple(decision.problems),
    )
    write_outcome(store, outcome)
    reason, last = outcome.stop_reason(), part.pipeline_round == config.rounds.count
    runs = not last and (reason is None or not config.rounds.stop_early)
    if last:
        next_round = "none: this was the last round (rounds.count)"
    elif runs:
        unless = f" (rounds.stop_early is false; it would stop it: {reason})" if reason else ""
        next_round = f"round {part.pipeline_round + 1} may run{unless}"
    else:
        next_round = f"stops: {reason}"
    context.log.info(f"round {part.pipeline_round}: {outcome.dev_gain:+.1f} points on dev; next: {next_round}")
    low, high = outcome.dev_gain_ci
    return dg.MaterializeResult(
        metadata={
            "dev_gain_points": round(outcome.dev_gain, 1),
            "dev_gain_ci": [round(low, 1), round(high, 1)],
            "min_gain": config.rounds.min_gain,
            "gate_problems": list(decision.problems),
            "next_round": next_round,
            NEXT_ROUND_RUNS: runs,  # what the next-round sensor reads
        }
    )
