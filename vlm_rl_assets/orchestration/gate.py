"""The promotion gate's decision on a round's stored release report, and what the UI shows of it: the promotion_gate
check, promoted_policy (which acts on it) and round_gain (whose stop rule reads it) share both."""

import dagster as dg
import polars as pl

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation.promotion import Gate, release_gate
from vlm_rl_assets.evaluation.stats import OVERALL
from vlm_rl_assets.names import POLICY_CHECKPOINT, POLICY_KEY, RELEASE_REPORT
from vlm_rl_assets.orchestration.ui import markdown_table, readable_metadata
from vlm_rl_assets.readable import delta_points, deltas_in_points
from vlm_rl_assets.store.base import Store


def gate(config: PipelineConfig, store: Store, pipeline_round: int = 1) -> Gate:
    """The gate on the stored release report of the current policy checkpoint (of a round)."""
    return release_gate(
        store,
        RELEASE_REPORT,
        (POLICY_CHECKPOINT, POLICY_KEY),
        list(config.categories),
        config.eval.max_category_loss,
        pipeline_round,
    )


def gate_metadata(gate: Gate, max_category_loss: float) -> dict:
    """What the UI shows of a gate decision: every reason not to promote, and the deltas it judged."""
    metadata = {
        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in gate.problems) or "none: promote"),
        "max_category_loss": max_category_loss,
        "deltas": markdown_table(deltas_in_points(gate.deltas), 50),
    }
    for row in gate.deltas.filter(pl.col("category") == OVERALL).iter_rows(named=True):
        metadata["overall"] = delta_points(row["delta"], row["ci_low"], row["ci_high"])
        metadata |= {f"overall_{k}": row[k] for k in ("delta", "ci_low", "ci_high")}
    categories = gate.deltas.filter(pl.col("category") != OVERALL)["delta"]
    if categories.len():
        metadata["worst_category_delta"] = categories.min()
    return readable_metadata(metadata)
