"""The asset graph one validated config makes: its assets on that config's partitions, its checks, and the lists the
jobs select. The code location (`definitions.build_defs`), the demo and the experiments each build it from the
config they run, so partitions and config never disagree and a variant with another round count runs in-process."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from vlm_rl_assets.assets.base_model import base_model
from vlm_rl_assets.assets.benchmark_scores import benchmark_scores
from vlm_rl_assets.assets.dpo_checkpoint import dpo_checkpoint
from vlm_rl_assets.assets.external_benchmarks import external_benchmarks
from vlm_rl_assets.assets.filtered_rollouts import filtered_rollouts
from vlm_rl_assets.assets.gaming_monitor import category_gaming_monitor, release_gaming_monitor
from vlm_rl_assets.assets.grpo_checkpoint import grpo_checkpoint
from vlm_rl_assets.assets.judge_calibration import judge_calibration
from vlm_rl_assets.assets.judged_pairs import judged_pairs
from vlm_rl_assets.assets.policy_checkpoint import policy_checkpoint
from vlm_rl_assets.assets.promoted_policy import promoted_policy
from vlm_rl_assets.assets.promotion_gate import promotion_gate
from vlm_rl_assets.assets.prompt_mixture import prompt_mixture
from vlm_rl_assets.assets.release_report import release_report
from vlm_rl_assets.assets.rollouts import rollouts
from vlm_rl_assets.assets.round_gain import round_gain
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.orchestration.partitions import Partitions
from vlm_rl_assets.orchestration.resources import PipelineResource

TRAINED = {"dpo": dpo_checkpoint, "grpo": grpo_checkpoint}  # a category's training step, by training.algorithm


@dataclass(frozen=True)
class Graph:
    """One config's assets and checks, in the graph's order."""

    partitions: Partitions
    category_assets: list[dg.AssetsDefinition]  # prompt_mixture .. benchmark_scores: what a category run selects
    release_assets: list[dg.AssetsDefinition]  # the candidate, its report (experiments stop here), round_gain
    promotion_assets: list[dg.AssetsDefinition]  # the release job's last step: promote only what passed the gate
    checks: list[dg.AssetChecksDefinition]

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [base_model, *self.category_assets, *self.release_assets, *self.promotion_assets, external_benchmarks]

    @property
    def everything(self) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
        """What `dg.materialize` takes (checks run with the assets they check)."""
        return [*self.assets, *self.checks]

    def materialize(
        self, selection: object, pipeline: PipelineResource, partition_key: str | None = None, **kwargs: object
    ) -> dg.ExecuteInProcessResult:
        """`selection` (asset names, assets or an AssetSelection) in this process, on `pipeline`'s config and store;
        `kwargs` as `dg.materialize` takes them (instance, tags, raise_on_error)."""
        resources = {"pipeline": pipeline}
        return dg.materialize(
            self.everything, selection=selection, partition_key=partition_key, resources=resources, **kwargs
        )


def build_graph(config: PipelineConfig) -> Graph:
    partitions = Partitions.of(config)
    trained = TRAINED[config.training.algorithm]
    category = [prompt_mixture, rollouts, filtered_rollouts, judged_pairs, trained, benchmark_scores(trained.key)]
    release = [policy_checkpoint, release_report, *([round_gain] if partitions.rounds > 1 else [])]
    return Graph(
        partitions,
        category_assets=[_on(asset, partitions.category) for asset in category],
        release_assets=[_on(asset, partitions.release) for asset in release],
        promotion_assets=[_on(promoted_policy, partitions.release)],
        # judge_calibration blocks judged_pairs when the judge fails calibration; promotion_gate reports the rule
        # promoted_policy acts on (not blocking: an experiment's release_report stands whether or not it would be
        # promoted); gaming_monitor warns when the trained model games the judge more than the base model
        checks=[
            judge_calibration(partitions),
            promotion_gate(partitions),
            category_gaming_monitor(partitions),
            release_gaming_monitor(partitions),
        ],
    )


def _on(asset: dg.AssetsDefinition, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    """`asset` partitioned by `partitions` (None: unpartitioned, as it was defined)."""
    if partitions is None:
        return asset
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))
