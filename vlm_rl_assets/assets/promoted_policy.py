"""promoted_policy: the release step. It re-checks release_report's stored deltas with the promotion gate's rule and,
only if they pass, copies the policy checkpoint (with rounds, the run's round's) to `promoted_policy/mixture`, the
checkpoint to serve. A policy that
fails the gate (or whose report is missing or incomplete) fails this step with the reasons, and the previously
promoted checkpoint stays."""

import dagster as dg

from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.policy_checkpoint import ASSET as POLICY_ASSET
from vlm_rl_assets.assets.policy_checkpoint import POLICY_KEY
from vlm_rl_assets.assets.promotion_gate import gate, gate_metadata
from vlm_rl_assets.assets.retries import retry_transient
from vlm_rl_assets.evaluation.promotion import promote
from vlm_rl_assets.partitions import round_partitions, stage
from vlm_rl_assets.resources import PipelineResource

ASSET = "promoted_policy"


@dg.asset(
    partitions_def=round_partitions,
    deps=["release_report"],
    group_name="evaluation",
    kinds={"pytorch"},
    description="The policy checkpoint that passed the promotion gate; not materialized (and the last one kept) when "
    "the gate fails, with the reasons in the run's failure.",
)
@retry_transient
@metered
def promoted_policy(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    run, config, store = stage(context), pipeline.config(), pipeline.store()
    decision = gate(config, store, run.pipeline_round)
    metadata = gate_metadata(decision, config.eval.max_category_loss)
    if decision.problems:
        raise dg.Failure(
            description="policy not promoted (the last promoted policy stays): " + "; ".join(decision.problems),
            metadata=metadata,
        )
    source = store.local_checkpoint(POLICY_ASSET, run.key(POLICY_KEY), partitioned=False)
    uri = promote(store, source, ASSET, POLICY_KEY)
    context.log.info(f"promoted policy {decision.policy_id} to {uri}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "policy_id": decision.policy_id,
            "promoted_from": store.checkpoint_uri(POLICY_ASSET, run.key(POLICY_KEY)),
            "checkpoint": uri,
        },
        data_version=dg.DataVersion(decision.policy_id),
    )
