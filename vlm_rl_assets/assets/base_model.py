"""base_model: the SFT model every rollout samples from (a configured folder, or the embedded tiny one)."""

from pathlib import Path

import dagster as dg
import polars as pl

from vlm_rl_assets.bootstrap.embedded import NO_DATASET, BootstrapReport, DatasetRows, bootstrap_embedded_model
from vlm_rl_assets.bootstrap.settings import BootstrapSettings
from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.evaluation import chance
from vlm_rl_assets.model.folder_check import check_image_placement
from vlm_rl_assets.model.loading import load_processor
from vlm_rl_assets.model.settings import EMBEDDED
from vlm_rl_assets.names import BASE_MODEL
from vlm_rl_assets.orchestration.images import load_images
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.retries import GPU_POOL
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import markdown_table
from vlm_rl_assets.planning.report import plan_table
from vlm_rl_assets.prompts.category import category_prompts
from vlm_rl_assets.store.base import Store

NOT_CHECKED = (
    "not run: a configured model.path has no dev check here (base_model does not run it), so no category is compared "
    "with chance and none is refused; benchmark_scores' base accuracy shows a category at chance"
)


@dg.asset(
    pool=GPU_POOL,
    group_name="models",
    kinds={"pytorch", "transformers"},
    description="The SFT vision-language model: model.path, or on the embedded default a tiny Qwen2-VL built "
    "and SFT-bootstrapped here (synthetic tasks and the datasets' bootstrap rows) to an imperfect level so DPO has "
    "headroom.",
)
@asset_step
def base_model(context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> dg.MaterializeResult:
    config, store = pipeline.config, pipeline.store
    if config.model.path != EMBEDDED:
        folder = pipeline.base_model_dir()  # validates the folder's files
        check_image_placement(load_processor(folder), folder)
        chance.write_verdicts(store, chance.unchecked(list(config.categories), config.model.path))
        context.log.info(f"{BASE_MODEL}: {NOT_CHECKED}")
        return dg.MaterializeResult(
            metadata={
                "uri": dg.MetadataValue.path(str(folder)),
                "source": "configured",
                "chance_check": NOT_CHECKED,
                **memory_plan(config, folder),
            }
        )

    import torch  # heavy (~3 s): only when the embedded model is built

    torch.set_num_threads(config.model.torch_threads)
    dataset = dataset_rows(context, config, store)
    with store.staged_dir(BASE_MODEL, EMBEDDED) as out_dir:  # refused if its disk cannot hold the one it replaces
        report = bootstrap_embedded_model(
            out_dir,
            config.bootstrap,
            config.synthetic_categories(),
            config.engine.batch_size,
            config.eval.max_new_tokens,
            context.log.info,
            dataset,
        )
    folder = pipeline.base_model_dir()
    verdicts = chance_check(context, config, store, report)
    return dg.MaterializeResult(
        metadata={
            "uri": dg.MetadataValue.path(store.checkpoint_uri(BASE_MODEL, EMBEDDED)),
            "source": "embedded",
            "sft_steps": report.steps,
            "sft_seconds": round(report.seconds, 1),
            "sft_final_loss": report.final_loss,
            "dev_accuracy": report.dev_accuracy,
            "dev_accuracy_mean": report.dev_mean,
            "dev_band": [config.bootstrap.min_mean_accuracy, config.bootstrap.max_mean_accuracy],
            "dev_band_verdict": band_verdict(context, config.bootstrap, report),
            "sft_rows": report.sft_rows,
            "dev_checks": markdown_table(pl.DataFrame(report.checks), 40),
            "size_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 1e6, 2),
            "chance": {c: round(x, 3) for c, x in zip(verdicts["category"], verdicts["chance"]) if x is not None},
            "chance_verdict": dict(zip(verdicts["category"], verdicts["verdict"])),
            "at_chance": verdicts.filter(pl.col("verdict") == chance.AT_CHANCE)["category"].to_list(),
            "chance_check": markdown_table(verdicts.drop("model", "message"), 40),
            **memory_plan(config, folder),
        }
    )


def memory_plan(config: PipelineConfig, folder: Path) -> dict[str, object]:
    """The plan of every stage on this model (`python -m vlm_rl_assets plan` prints it whole)."""
    plan = config.plan_or_why(folder)
    if isinstance(plan, str):
        return {"memory_plan": plan}
    return {"memory_plan": dg.MetadataValue.md(plan_table(plan)), "memory_plan_fits": plan.fits}


def chance_check(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    store: Store,
    report: BootstrapReport,
) -> pl.DataFrame:
    """Each category's dev accuracy at the bootstrap's last check against its chance level on the same dev items;
    stored (`chance.TABLE`) for prompt_mixture and rollouts, and a category at chance warned about by name."""
    verdicts = chance.chance_verdicts(
        report.dev_items,
        report.dev_accuracy,
        list(config.categories),
        EMBEDDED,
        report.sft_rows,
        set(config.synthetic_categories()),
        report.steps,
    )
    chance.write_verdicts(store, verdicts)
    for message in verdicts["message"].drop_nulls():
        context.log.warning(f"{BASE_MODEL}: {message}")
    return verdicts


def band_verdict(context: dg.AssetExecutionContext, settings: BootstrapSettings, report: BootstrapReport) -> str:
    """Where the base's dev mean landed against the bootstrap band, warned about when outside it."""
    verdict, warning = report.band_verdict(settings)
    if warning:
        context.log.warning(f"{BASE_MODEL}: {warning}")
    return verdict


def dataset_rows(context: dg.AssetExecutionContext, config: PipelineConfig, store: Store) -> DatasetRows:
    """Every dataset category's bootstrap and dev rows, templated as prompt_mixture templates them (bench is read
    only so that it owns overlaps there too; train is not read) and their images."""
    tables = []
    for category, cat in config.categories.items():
        if cat.synthetic:
            continue
        loaded, table = category_prompts(store, category, config.prompt_spec(category), skip={"train"})
        if loaded.refused:
            context.log.warning(
                f"{BASE_MODEL}: {len(loaded.refused)} rows of {cat.source} refused; prompt_mixture[{category}] quarantines "
                "them with their reasons"
            )
        tables.append(table.prompts.filter(pl.col("split").is_in(["bootstrap", "dev"])))
    if not tables:
        return NO_DATASET
    prompts, images, _ = load_images(context, config, store, pl.concat(tables), BASE_MODEL)
    return DatasetRows(prompts, images)
