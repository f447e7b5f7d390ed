"""The promotion gate as the UI shows it: the `promotion_gate` check on release_report (not blocking, so experiment
runs keep their reports) and the metadata of a gate decision, which promoted_policy acts on."""

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.policy_checkpoint import ASSET as POLICY_ASSET
from vlm_rl_assets.assets.policy_checkpoint import POLICY_KEY
from vlm_rl_assets.assets.release_report import ASSET as REPORT_ASSET
from vlm_rl_assets.assets.release_report import release_report
from vlm_rl_assets.assets.ui import markdown_table, readable_metadata
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation.promotion import Gate, release_gate
from vlm_rl_assets.evaluation.stats import OVERALL
from vlm_rl_assets.partitions import round_partitions, stage
from vlm_rl_assets.readable import delta_points, deltas_in_points
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store.base import Store


def gate(config: PipelineConfig, store: Store, pipeline_round: int = 1) -> Gate:
    """The gate on the stored release report of the current policy checkpoint (of a round)."""
    return release_gate(
        store,
        REPORT_ASSET,
        (POLICY_ASSET, POLICY_KEY),
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


@dg.asset_check(
    asset=release_report,
    partitions_def=round_partitions,
    description="Promote the policy only if the release report is complete (no missing verdict or NaN delta), the "
    "overall paired delta's 95% CI lies above zero and no category's CI lies wholly below -eval.max_category_loss. "
    "Not blocking, so experiments keep their reports; promoted_policy acts on the same rule.",
)
def promotion_gate(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
    config = pipeline.config()
    decision = gate(config, pipeline.store(), stage(context).pipeline_round)
    return dg.AssetCheckResult(
        passed=not decision.problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(decision.problems) or None,
        metadata=gate_metadata(decision, config.eval.max_category_loss),
    )
