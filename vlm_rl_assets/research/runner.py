"""Run the named experiments of research/experiments.py through the pipeline's own assets, and write docs/findings.md.

    python -m vlm_rl_assets.experiments run seeds chosen_source   # or: all
    python -m vlm_rl_assets.experiments run rounds --variants '*_seed0'   # some variants; the rest later
    python -m vlm_rl_assets.experiments report                    # docs/findings.md from the stored results

Each is also a Dagster job (`seed_repeats`, `ablation_*`) so it runs from the UI. A variant is the pipeline config
with its overrides, stored under <storage root>/experiments/<experiment>/<variant>/ and starting from the main
store's base model; each category run is a recorded Dagster run tagged with the experiment and variant, round by
round, in this process (its assets built from its own config: `graph.build_graph`, whatever its round count).
A killed experiment resumes: finished categories (the last table of their stages exists for that round) and releases
are not run again.
"""

import fnmatch
import posixpath

import dagster as dg
import polars as pl
import yaml

from vlm_rl_assets.config import load_config
from vlm_rl_assets.graph import build_graph
from vlm_rl_assets.names import BASE_MODEL, ROLLOUTS
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.research.experiments import EXPERIMENTS, Experiment, Variant, variant_items, variant_results
from vlm_rl_assets.research.variant_run import Log, materialize, run_variant
from vlm_rl_assets.research.variants import with_overrides
from vlm_rl_assets.rollouts.shards import shard_key
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError, Store

RESULTS = "experiments"  # table asset name in the main store: experiments/<experiment>.parquet
ITEMS = "experiment_items"  # a released experiment's verdicts per bench prompt: experiment_items/<experiment>.parquet
SCHEMAS = {RESULTS: schemas.EXPERIMENT_RESULTS, ITEMS: schemas.EXPERIMENT_ITEMS}
SHARD_FOLDERS = posixpath.dirname(shard_key("*", "*", 0))  # <key>/shards/<fingerprint>, under rollouts


def variant_resource(main: PipelineResource, experiment: Experiment, variant: Variant) -> PipelineResource:
    """The variant's config written to a file (its overrides, its own storage folder, the main base model)."""
    config = main.config
    missing = sorted(set(experiment.categories) - set(config.categories))
    if missing:
        raise ValueError(
            f"experiment {experiment.name!r} runs categories {missing} that the config lacks; experiments are "
            "defined on the embedded default's categories (vlm_rl_assets/default_config.yaml)"
        )
    main_store = main.store
    rel = f"experiments/{experiment.name}/{variant.name}"
    raw = with_overrides(
        config.model_dump(mode="json"),
        {
            **variant.overrides,
            "eval.split": experiment.split,
            "storage.root": main_store.subroot(rel),
            "model.path": str(main.base_model_dir()),
        },
    )
    # beside the variant's data, or in the local cache when the data is not on this disk (an s3:// root)
    folder = (main_store.local_path(rel) or config.storage.cache_path) / "config"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{experiment.name}-{variant.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return PipelineResource(load_config(path))  # a bad override fails here, naming the key


def run_experiment(
    experiment: Experiment,
    main: PipelineResource,
    instance: dg.DagsterInstance,
    log: Log = print,
    only: str = "*",
) -> pl.DataFrame:
    """Materialize the rounds of categories (and releases) not yet done of every variant whose name matches `only`
    (a glob); after each, store the experiment's results (and a released one's verdicts per bench prompt): this
    variant's rows replace its earlier ones, other variants' stay, so a run stopped between variants keeps what
    finished. Returns the stored results."""
    variants = [v for v in experiment.variants if fnmatch.fnmatchcase(v.name, only)]
    if not variants:
        raise ValueError(f"no variant of {experiment.name} matches {only!r}: {[v.name for v in experiment.variants]}")
    try:
        main.base_model_dir()
    except MissingUpstreamError:
        log("no base model yet: materializing base_model first")
        materialize(
            build_graph(main.config), [BASE_MODEL], instance, main, {"experiment": experiment.name, "variant": "-"}
        )
    first, results, items = None, *(stored(main.store, table, experiment.name) for table in (RESULTS, ITEMS))
    for variant in variants:
        resource = variant_resource(main, experiment, variant)
        store = resource.store
        first = first or store
        share_rollout_shards(first, store)
        run_variant(experiment, variant.name, resource, instance, log)
        rounds = resource.config.rounds.count
        results = _replace_variant(experiment, results, variant_results(store, experiment, variant.name, rounds))
        main.store.write_table(RESULTS, experiment.name, results, SCHEMAS[RESULTS])
        if experiment.release:
            items = _replace_variant(experiment, items, variant_items(store, experiment, variant.name, rounds))
            main.store.write_table(ITEMS, experiment.name, items, SCHEMAS[ITEMS])
    return results


def _replace_variant(experiment: Experiment, table: pl.DataFrame | None, rows: pl.DataFrame) -> pl.DataFrame:
    """`table` with the variant of `rows` replaced by them, in the experiment's variant order."""
    variant = rows["variant"][0]
    earlier = [] if table is None else [table.filter(pl.col("variant") != variant)]
    return _in_variant_order(experiment, pl.concat([*earlier, rows]))


def _in_variant_order(experiment: Experiment, results: pl.DataFrame) -> pl.DataFrame:
    order = {v.name: i for i, v in enumerate(experiment.variants)}
    rank = pl.col("variant").replace_strict(order, return_dtype=pl.Int64)
    return results.with_row_index("_row").sort(rank, "_row").drop("_row")


def share_rollout_shards(source: Store, target: Store) -> None:
    """Copy the first variant's finished rollout shards into a local variant store: shards are keyed by the
    fingerprint of everything that shapes them (prompts, policy, sampling), so a variant that changes only what
    comes after the rollouts (beta, loss, pairing) resumes them all instead of sampling again, and any other
    variant ignores them."""
    source.copy_folders(target, ROLLOUTS, SHARD_FOLDERS)


def stored(store: Store, table: str, name: str) -> pl.DataFrame | None:
    """The experiment's stored `table` (RESULTS or ITEMS), or None before any variant finished."""
    return store.read_table(table, name, SCHEMAS[table]) if store.has_table(table, name) else None


def stored_results(main: PipelineResource) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """Every experiment's stored results and, for the released ones, verdicts per bench prompt."""
    store = main.store
    tables = [{name: stored(store, table, name) for name in EXPERIMENTS} for table in (RESULTS, ITEMS)]
    return tuple({name: df for name, df in by_name.items() if df is not None} for by_name in tables)


def experiment_job(experiment: Experiment) -> dg.JobDefinition:
    """A one-op job: the op runs the variants as their own recorded runs (thin wrapper over run_experiment)."""

    @dg.op(name=f"run_{experiment.name}", description=experiment.question)
    def run(context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> None:
        results = run_experiment(experiment, pipeline, context.instance, context.log.info)
        context.log.info(f"{experiment.name}: {results.height} result rows stored in {RESULTS}/{experiment.name}")

    @dg.job(
        name=experiment.job,
        description=f"{experiment.question} Expected: {experiment.expected}",
        tags={"kind": "experiment"},
    )
    def job() -> None:
        run()

    return job


def experiment_jobs() -> list[dg.JobDefinition]:
    return [experiment_job(e) for e in EXPERIMENTS.values()]
