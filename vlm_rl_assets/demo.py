"""Materialize the whole graph on the configured instance, round by round, and print base vs. trained scores per
category.

    DAGSTER_HOME=$PWD/.dagster_home python -m vlm_rl_assets.demo

Runs are recorded in the instance, so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time

# The demo runs one step at a time in this process, so torch's OpenMP threads own the cores: let them spin a few
# milliseconds between ops (libgomp's own default) instead of sleeping at once, which the package sets for processes
# that may share cores (vlm_rl_assets/__init__.py). On 2 idle cores the bootstrap's SFT steps run 1.5x faster
# (4.65 vs 2.92 steps/s); two spinning processes on the same cores would collapse 10x (bench/RESULTS.md, first run).
# Set before torch is imported (the assets import it when they run); an explicit value in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "300000")

import dagster as dg
import polars as pl

from vlm_rl_assets.config import configured
from vlm_rl_assets.evaluation.stats import OVERALL
from vlm_rl_assets.graph import Graph, build_graph
from vlm_rl_assets.model.train_result import METRICS_FILE
from vlm_rl_assets.names import (
    BASE_MODEL,
    BENCHMARK_SCORES,
    CATEGORY_CHECKPOINT,
    POLICY_CHECKPOINT,
    POLICY_KEY,
    RELEASE_REPORT,
)
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.readable import delta_points
from vlm_rl_assets.rounds.plan import read_outcome
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import round_key

WATCHED = ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen")


def materialize(
    graph: Graph,
    pipeline: PipelineResource,
    selection: list,
    instance: dg.DagsterInstance,
    partition: str | None = None,
) -> None:
    result = graph.materialize(selection, pipeline, partition, instance=instance)
    if not result.success:
        sys.exit(f"materialization of {partition or 'unpartitioned assets'} failed; see the log above")


def materialize_rounds(graph: Graph, pipeline: PipelineResource, instance: dg.DagsterInstance, rounds: range) -> int:
    """Every category's stages, then the release stages, round by round until the stop rule ends them (with
    rounds.stop_early); the last round that ran."""
    partitions = graph.partitions
    for pipeline_round in rounds:
        for category in partitions.categories:
            key = partitions.category_key(category, pipeline_round)
            materialize(graph, pipeline, graph.category_assets, instance, key)
        materialize(graph, pipeline, graph.release_assets, instance, partitions.release_key(pipeline_round))
        outcome = read_outcome(pipeline.store, pipeline_round)
        reason = outcome.stop_reason() if outcome else None
        if pipeline_round < rounds[-1] and reason and pipeline.config.rounds.stop_early:
            print(f"rounds stop after round {pipeline_round}: {reason}")
            return pipeline_round
    return rounds[-1]


def score_table(store, categories: list[str], trained: str = "dpo", pipeline_round: int = 1) -> pl.DataFrame:
    """Greedy accuracy per category: base, each category's own trained model (named by its algorithm), the policy."""
    keys = [round_key(c, pipeline_round) for c in categories]
    per_category = pl.concat([store.read_table(BENCHMARK_SCORES, key, schemas.BENCHMARK_SCORES) for key in keys])
    scores = round_key("scores", pipeline_round)
    release = store.read_table(RELEASE_REPORT, scores, schemas.BENCHMARK_SCORES).filter(pl.col("model") == "policy")
    return (
        pl.concat([per_category, release])
        .filter(pl.col("metric") == "accuracy")
        .pivot(on="model", index="category", values="value")
        .with_columns(
            (pl.col(trained) - pl.col("base")).alias(f"{trained}_delta"), policy_delta=pl.col("policy") - pl.col("base")
        )
        .select("category", "base", trained, f"{trained}_delta", "policy", "policy_delta")
    )


def training_table(store, categories: list[str], trained: str, pipeline_round: int = 1) -> pl.DataFrame:
    """Final training health per checkpoint (of a round): reward accuracy and margin on the last logged steps."""
    checkpoints = {c: store.local_checkpoint(trained, round_key(c, pipeline_round)) for c in categories}
    checkpoints["mixture"] = store.local_checkpoint(POLICY_CHECKPOINT, round_key(POLICY_KEY, pipeline_round))
    rows = []
    for name, folder in checkpoints.items():
        metrics = json.loads((folder / METRICS_FILE).read_text())
        final = metrics["final"]
        rows.append({"checkpoint": name, "steps": metrics["steps"], **{k: final.get(k) for k in WATCHED}})
    return pl.DataFrame(rows)


def headline(store, pipeline_round: int) -> str:
    """release_report's overall paired delta, as its metadata shows it: `+5.4 points [+3.5, +7.2]`."""
    deltas = store.read_table(RELEASE_REPORT, round_key("deltas", pipeline_round), schemas.BENCHMARK_DELTAS)
    overall = deltas.filter(pl.col("category") == OVERALL).row(0, named=True)
    return delta_points(overall["delta"], overall["ci_low"], overall["ci_high"])


def main() -> None:
    start = time.monotonic()
    instance = dg.DagsterInstance.get()
    config = configured()
    graph, pipeline = build_graph(config), PipelineResource(config)
    materialize(graph, pipeline, [BASE_MODEL], instance)
    last = materialize_rounds(graph, pipeline, instance, range(1, config.rounds.count + 1))
    store, categories = pipeline.store, list(config.categories)
    algorithm = config.training.algorithm
    table = score_table(store, categories, algorithm, last)
    mean = table.select(pl.exclude("category").mean()).with_columns(category=pl.lit("MEAN")).select(table.columns)
    with pl.Config(
        tbl_rows=50,
        tbl_width_chars=160,
        float_precision=3,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        after = f" after round {last}" if config.rounds.count > 1 else ""
        print(
            f"\nGreedy benchmark accuracy (held-out), base vs. per-category {algorithm.upper()} vs. mixture policy{after}:"
        )
        print(pl.concat([table, mean]))
        print(f"\n{algorithm.upper()} training, last logged values:")
        print(training_table(store, categories, CATEGORY_CHECKPOINT[algorithm], last))
    print(
        f"\nmixture policy vs. base, mean over categories (paired on the same prompts, 95% CI): {headline(store, last)}"
    )
    print(f"demo wall time: {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
