"""One experiment variant materialized through the pipeline's own assets, round by round and resumable: in this
process, or in a child (`variant_worker.py`) when its `rounds.count` is not this process's. The partitions are read
from the config when the assets are imported, so a process materializes only the round count it was started with;
both ways run `run_variant`, the child with the same Dagster instance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from vlm_rl_assets.assets.graph import ALL_ASSETS, CATEGORY_ASSETS, RELEASE_ASSETS
from vlm_rl_assets.assets.prompt_mixture import prompt_mixture
from vlm_rl_assets.config import CONFIG_ENV_VAR, PipelineConfig
from vlm_rl_assets.partitions import ROUNDS, category_partition_key, release_partition_key
from vlm_rl_assets.processes import run_streamed
from vlm_rl_assets.research.experiments import POLICY_STAGES, Experiment, Variant, category_done, release_done
from vlm_rl_assets.resources import PipelineResource

Log = Callable[[str], None]


def run_variant_anywhere(
    experiment: Experiment, variant: str, resource: PipelineResource, instance: dg.DagsterInstance, log: Log
) -> None:
    """`run_variant` here when the variant's round count is this process's, else in a variant_worker process."""
    if resource.config().rounds.count == ROUNDS:
        return run_variant(experiment, variant, resource, instance, log)
    job = VariantJob(experiment, variant, resource.config_path, dg.serialize_value(instance.get_ref())).write()
    command = [sys.executable, "-m", "vlm_rl_assets.research.variant_worker", str(job)]
    exited = run_streamed(command, log, keep_lines=30, env={**os.environ, CONFIG_ENV_VAR: resource.config_path})
    if exited.returncode:
        raise RuntimeError(
            f"experiment {experiment.name}/{variant} ({resource.config().rounds.count} rounds, in its own process): "
            f"{exited.summary()}; rerunning the experiment resumes it. Its last lines:\n{exited.tail()}"
        )


def run_variant(
    experiment: Experiment, variant: str, resource: PipelineResource, instance: dg.DagsterInstance, log: Log
) -> None:
    """Round by round: every category's stages not yet done, then the release (and with rounds its outcome, which
    the next round starts from) unless done; each a recorded run tagged with the experiment and variant."""
    store, config = resource.store(), resource.config()
    rounds = config.rounds.count
    if rounds != ROUNDS:
        raise ValueError(
            f"{experiment.name}/{variant} runs {rounds} rounds, but this process's partitions have {ROUNDS} (read from "
            f"its config at import): run it with {CONFIG_ENV_VAR}={resource.config_path}"
        )
    stages = category_stages(experiment, config)
    last = stages[-1].key.to_user_string()
    tags = {"experiment": experiment.name, "variant": variant}
    for pipeline_round in range(1, rounds + 1):
        todo = [c for c in experiment.categories if not category_done(store, c, pipeline_round, last)]
        done = len(experiment.categories) - len(todo)
        log(f"{experiment.name}/{variant} round {pipeline_round} of {rounds}: {done} categories done, running {todo}")
        for category in todo:
            materialize(stages, instance, resource, tags, category_partition_key(category, pipeline_round))
        if experiment.release and not release_done(store, pipeline_round, rounds):
            materialize(RELEASE_ASSETS, instance, resource, tags, release_partition_key(pipeline_round))


def category_stages(experiment: Experiment, config: PipelineConfig) -> list[dg.AssetsDefinition]:
    """Every category stage, or without `per_category` only those the mixture policy trains from: through the judged
    pairs for DPO, the prompts alone for GRPO (it samples while it trains). That skips a DPO run and a benchmark per
    category and round, about 40% of a DPO round on the default config (the demo's: 335 of 790 s), and for GRPO the
    rollouts and a GRPO run per category, most of its compute."""
    if experiment.per_category:
        return CATEGORY_ASSETS
    if config.training.algorithm == "grpo":
        return [prompt_mixture]
    return [stage for stage in CATEGORY_ASSETS if stage.key.to_user_string() in POLICY_STAGES]


def materialize(
    selection: list,
    instance: dg.DagsterInstance,
    resource: PipelineResource,
    tags: dict,
    partition_key: str | None = None,
) -> None:
    result = dg.materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources={"pipeline": resource},
        tags=tags,
        raise_on_error=False,
    )
    if not result.success:
        where = f"[{partition_key}]" if partition_key else ""
        raise RuntimeError(
            f"experiment {tags['experiment']}/{tags['variant']}{where} failed; see that run in the Dagster UI "
            "(tags experiment/variant). Rerunning the experiment resumes from the first unfinished category."
        )


@dataclass(frozen=True)
class VariantJob:
    """What a variant_worker runs: the experiment, the variant, its config file and the runner's Dagster instance."""

    experiment: Experiment
    variant: str
    config_path: str
    instance: str  # the runner's instance's reference, serialized: the child records its runs there too

    def open_instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_ref(dg.deserialize_value(self.instance))

    def write(self) -> Path:
        """Beside the variant's config."""
        path = Path(self.config_path).with_suffix(".job.json")
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @staticmethod
    def read(path: Path) -> VariantJob:
        fields = json.loads(path.read_text())
        experiment = fields["experiment"] | {"categories": tuple(fields["experiment"]["categories"])}
        experiment["variants"] = tuple(Variant(**v) for v in experiment["variants"])
        return VariantJob(**fields | {"experiment": Experiment(**experiment)})
