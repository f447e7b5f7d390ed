"""promotion_gate: the promotion gate on release_report as a check (not blocking, so experiment runs keep their
reports); promoted_policy acts on the same rule."""

import dagster as dg

from vlm_rl_assets.names import PROMOTION_GATE, RELEASE_REPORT
from vlm_rl_assets.orchestration.gate import gate, gate_metadata
from vlm_rl_assets.orchestration.partitions import Partitions, partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource

DESCRIPTION = (
    "Promote the policy only if the release report is complete (no missing verdict or NaN delta), the overall "
    "paired delta's 95% CI lies above zero and no category's CI lies wholly below -eval.max_category_loss. Not "
    "blocking, so experiments keep their reports; promoted_policy acts on the same rule."
)


def judge_the_release(
    context: dg.AssetCheckExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.AssetCheckResult:
    config = pipeline.config
    decision = gate(config, pipeline.store, partition_slice(context).pipeline_round)
    return dg.AssetCheckResult(
        passed=not decision.problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(decision.problems) or None,
        metadata=gate_metadata(decision, config.eval.max_category_loss),
    )


def promotion_gate(partitions: Partitions) -> dg.AssetChecksDefinition:
    """The check on release_report, by round with rounds."""
    return dg.asset_check(
        asset=RELEASE_REPORT, name=PROMOTION_GATE, partitions_def=partitions.release, description=DESCRIPTION
    )(judge_the_release)
