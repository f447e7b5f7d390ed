"""base_model: the SFT model every rollout samples from (a configured folder, or the embedded tiny one)."""

import dagster as dg
import polars as pl

from vlm_rl_assets.assets.metered import metered
from vlm_rl_assets.assets.retries import GPU_POOL, retry_transient
from vlm_rl_assets.assets.ui import markdown_table
from vlm_rl_assets.bootstrap.embedded import bootstrap_embedded_model
from vlm_rl_assets.model.settings import EMBEDDED
from vlm_rl_assets.resources import PipelineResource


@dg.asset(
    pool=GPU_POOL,
    group_name="models",
    kinds={"pytorch", "transformers"},
    description="The SFT vision-language model: model.path, or on the embedded default a tiny Qwen2-VL built "
    "and SFT-bootstrapped here to an imperfect level so DPO has headroom.",
)
@retry_transient
@metered
def base_model(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    config, store = pipeline.config(), pipeline.store()
    if config.model.path != EMBEDDED:
        folder = pipeline.base_model_dir()  # validates the folder
        return dg.MaterializeResult(metadata={"uri": dg.MetadataValue.path(str(folder)), "source": "configured"})

    import torch  # heavy (~3 s): only when the embedded model is built

    torch.set_num_threads(config.model.torch_threads)
    for category, cat in config.categories.items():
        if not cat.synthetic:
            context.log.info(f"bootstrap: category {category!r} is a dataset ({cat.source}); the embedded model is not trained on it")
    with store.staged_dir("base_model", EMBEDDED) as out_dir:
        report = bootstrap_embedded_model(
            out_dir, config.bootstrap, config.synthetic_categories(), config.engine.batch_size, config.eval.max_new_tokens,
            context.log.info,
        )  # fmt: skip
    folder = pipeline.base_model_dir()
    return dg.MaterializeResult(
        metadata={
            "uri": dg.MetadataValue.path(store.checkpoint_uri("base_model", EMBEDDED)),
            "source": "embedded",
            "sft_steps": report.steps,
            "sft_seconds": round(report.seconds, 1),
            "sft_final_loss": report.final_loss,
            "dev_accuracy": report.dev_accuracy,
            "dev_accuracy_mean": sum(report.dev_accuracy.values()) / max(len(report.dev_accuracy), 1),
            "dev_checks": markdown_table(pl.DataFrame(report.checks), 40),
            "size_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 1e6, 2),
        }
    )
