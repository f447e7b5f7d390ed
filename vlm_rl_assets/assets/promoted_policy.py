"""promoted_policy: the release step. It re-checks release_report's stored deltas with the promotion gate's rule and,
only if they pass, copies the policy checkpoint (with rounds, the run's round's) to `promoted_policy/mixture`, the
checkpoint to serve. A policy that
fails the gate (or whose report is missing or incomplete) fails this step with the reasons, and the previously
promoted checkpoint stays."""

import dagster as dg

from vlm_rl_assets.evaluation.promotion import promote
from vlm_rl_assets.names import POLICY_CHECKPOINT, POLICY_KEY, PROMOTED_POLICY, RELEASE_REPORT
from vlm_rl_assets.orchestration.gate import gate, gate_metadata
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.step import asset_step


@dg.asset(
    deps=[RELEASE_REPORT],
    group_name="evaluation",
    kinds={"pytorch"},
    description="The policy checkpoint that passed the promotion gate; not materialized (and the last one kept) when "
    "the gate fails, with the reasons in the run's failure.",
)
@asset_step
def promoted_policy(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    decision = gate(config, store, part.pipeline_round)
    metadata = gate_metadata(decision, config.eval.max_category_loss)
    if decision.problems:
        raise dg.Failure(
            description="policy not promoted (the last promoted policy stays): " + "; ".join(decision.problems),
            metadata=metadata,
        )
    source = store.local_checkpoint(POLICY_CHECKPOINT, part.key(POLICY_KEY))
    uri = promote(store, source, PROMOTED_POLICY, POLICY_KEY)
    context.log.info(f"promoted policy {decision.policy_id} to {uri}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "policy_id": decision.policy_id,
            "promoted_from": store.checkpoint_uri(POLICY_CHECKPOINT, part.key(POLICY_KEY)),
            "checkpoint": uri,
        },
        data_version=dg.DataVersion(decision.policy_id),
    )
