"""One experiment variant materialized through the pipeline's own assets, round by round and resumable, in this
process: its assets are built from its own config (`graph.build_graph`), whatever its round count."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.graph import Graph, build_graph
from vlm_rl_assets.names import PROMPT_MIXTURE
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.research.experiments import POLICY_STAGES, Experiment, category_done, release_done

Log = Callable[[str], None]


def run_variant(
    experiment: Experiment, variant: str, resource: PipelineResource, instance: dg.DagsterInstance, log: Log
) -> None:
    """Round by round: every category's stages not yet done, then the release (and with rounds its outcome, which
    the next round starts from) unless done; each a recorded run tagged with the experiment and variant."""
    store, config = resource.store, resource.config
    rounds, graph = config.rounds.count, build_graph(config)
    stages = category_stages(experiment, config, graph)
    last = stages[-1].key.to_user_string()
    tags = {"experiment": experiment.name, "variant": variant}
    for pipeline_round in range(1, rounds + 1):
        todo = [c for c in experiment.categories if not category_done(store, c, pipeline_round, last)]
        done = len(experiment.categories) - len(todo)
        log(f"{experiment.name}/{variant} round {pipeline_round} of {rounds}: {done} categories done, running {todo}")
        for category in todo:
            materialize(
                graph, stages, instance, resource, tags, graph.partitions.category_key(category, pipeline_round)
            )
        if experiment.release and not release_done(store, pipeline_round, rounds):
            materialize(
                graph, graph.release_assets, instance, resource, tags, graph.partitions.release_key(pipeline_round)
            )


def category_stages(experiment: Experiment, config: PipelineConfig, graph: Graph) -> list[dg.AssetsDefinition]:
    """Every category stage, or without `per_category` only those the mixture policy trains from: through the judged
    pairs for DPO, the prompts alone for GRPO (it samples while it trains). That skips a DPO run and a benchmark per
    category and round, about 40% of a DPO round on the default config (the demo's: 335 of 790 s), and for GRPO the
    rollouts and a GRPO run per category, most of its compute."""
    if experiment.per_category:
        return graph.category_assets
    wanted = [PROMPT_MIXTURE] if config.training.algorithm == "grpo" else POLICY_STAGES
    return [asset for asset in graph.category_assets if asset.key.to_user_string() in wanted]


def materialize(
    graph: Graph,
    selection: list,
    instance: dg.DagsterInstance,
    resource: PipelineResource,
    tags: dict,
    partition_key: str | None = None,
) -> None:
    result = graph.materialize(selection, resource, partition_key, instance=instance, tags=tags, raise_on_error=False)
    if not result.success:
        where = f"[{partition_key}]" if partition_key else ""
        raise RuntimeError(
            f"experiment {tags['experiment']}/{tags['variant']}{where} failed; see that run in the Dagster UI "
            "(tags experiment/variant). Rerunning the experiment resumes from the first unfinished category."
        )
