"""Materialize the whole graph on the configured instance and print base vs. DPO scores per category.

    DAGSTER_HOME=$PWD/.dagster_home python -m vlm_rl_assets.demo

Runs are recorded in the instance, so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import json
import sys
import time

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.graph import ALL_ASSETS, CATEGORY_ASSETS
from vlm_rl_assets.assets.policy_checkpoint import POLICY_KEY
from vlm_rl_assets.config import load_config
from vlm_rl_assets.model.train_result import METRICS_FILE
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store import schemas

WATCHED = ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen")


def materialize(selection: list, instance: dg.DagsterInstance, partition_key: str | None = None) -> None:
    result = dg.materialize(
        ALL_ASSETS, selection=selection, partition_key=partition_key, instance=instance, resources={"pipeline": PipelineResource()}
    )
    if not result.success:
        sys.exit(f"materialization of {partition_key or 'unpartitioned assets'} failed; see the log above")


def score_table(store, categories: list[str]) -> pl.DataFrame:
    per_category = pl.concat([store.read_table("benchmark_scores", c, schemas.BENCHMARK_SCORES) for c in categories])
    release = store.read_table("release_report", "scores", schemas.BENCHMARK_SCORES).filter(pl.col("model") == "policy")
    return (
        pl.concat([per_category, release])
        .filter(pl.col("metric") == "accuracy")
        .pivot(on="model", index="category", values="value")
        .with_columns(dpo_delta=pl.col("dpo") - pl.col("base"), policy_delta=pl.col("policy") - pl.col("base"))
        .select("category", "base", "dpo", "dpo_delta", "policy", "policy_delta")
    )


def training_table(store, categories: list[str]) -> pl.DataFrame:
    """Final DPO training health per checkpoint: reward accuracy and margin on the last logged steps."""
    checkpoints = {c: store.local_checkpoint("dpo_checkpoint", c) for c in categories}
    checkpoints["mixture"] = store.local_checkpoint("policy_checkpoint", POLICY_KEY, partitioned=False)
    rows = []
    for name, folder in checkpoints.items():
        metrics = json.loads((folder / METRICS_FILE).read_text())
        final = metrics["final"]
        rows.append({"checkpoint": name, "steps": metrics["steps"], **{k: final.get(k) for k in WATCHED}})
    return pl.DataFrame(rows)


def main() -> None:
    start = time.monotonic()
    config = load_config()
    instance = dg.DagsterInstance.get()
    materialize(["base_model"], instance)
    for category in config.categories:
        materialize(CATEGORY_ASSETS, instance, category)
    materialize(["policy_checkpoint", "release_report"], instance)
    store = PipelineResource().store()
    table = score_table(store, list(config.categories))
    mean = table.select(pl.exclude("category").mean()).with_columns(category=pl.lit("MEAN")).select(table.columns)
    with pl.Config(
        tbl_rows=50, tbl_width_chars=160, float_precision=3, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True
    ):
        print(f"\nGreedy benchmark accuracy (held-out), base vs. per-category DPO vs. mixture policy ({POLICY_KEY}):")
        print(pl.concat([table, mean]))
        print("\nDPO training, last logged values:")
        print(training_table(store, list(config.categories)))
    print(f"demo wall time: {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
