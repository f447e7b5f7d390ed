"""judged_pairs[c]: chosen/rejected pairs from the model's own samples, with the category's beta; blocked when
the judge fails its calibration check (judge_calibration)."""

import dagster as dg
import polars as pl

from vlm_rl_assets.names import FILTERED_ROLLOUTS, JUDGED_PAIRS, PROMPT_MIXTURE
from vlm_rl_assets.orchestration.partitions import partition_slice
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.review_page import review_page
from vlm_rl_assets.orchestration.step import asset_step
from vlm_rl_assets.orchestration.ui import markdown_table
from vlm_rl_assets.pairs.filtering import words
from vlm_rl_assets.pairs.pairing import make_pairs
from vlm_rl_assets.readable import rounded
from vlm_rl_assets.store import schemas

SAMPLE_PAIRS, SAMPLE_PAIR_CHARS = 5, 80  # pairs shown in the metadata, each half cut to this many characters


@dg.asset(
    deps=[FILTERED_ROLLOUTS],
    group_name="pairs",
    kinds={"polars", "parquet"},
    description="Best-vs-worst pairs of the model's own samples with score margin >= pairing.min_margin, "
    "optionally length-balanced (pairing.max_length_ratio).",
)
@asset_step
def judged_pairs(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> dg.MaterializeResult:
    part, config, store = partition_slice(context), pipeline.config, pipeline.store
    category, key = part.category, part.key()
    cat = config.category(category)
    pairing = config.pairing
    paired = make_pairs(
        store.read_table(FILTERED_ROLLOUTS, key, schemas.FILTERED_ROLLOUTS),
        store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS),
        min_margin=pairing.min_margin,
        max_pairs_per_prompt=pairing.max_pairs_per_prompt,
        beta=cat.beta,
        judge_name=cat.judge,
        max_length_ratio=pairing.max_length_ratio,
        chosen_source=pairing.chosen_source,
    )
    pairs = paired.pairs
    if pairs.is_empty():
        raise ValueError(
            f"judged_pairs[{key}]: no pairs; no group held a right and a wrong answer with margin >= "
            f"{pairing.min_margin} (candidates dropped: {paired.dropped}). Check filtered_rollouts' drop reasons; "
            f"sample more per prompt (categories.{category}.samples_per_prompt), lower pairing.min_margin or "
            "raise pairing.max_length_ratio"
        )
    store.write_table(JUDGED_PAIRS, key, pairs, schemas.JUDGED_PAIRS)
    mean_words = pairs.select(words("chosen").mean(), words("rejected").mean()).row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "pairs": pairs.height,
            "prompts_with_pairs": pairs["prompt_id"].n_unique(),
            "mean_margin": float(pairs["margin"].mean()),
            "mean_chosen_score": float(pairs["chosen_score"].mean()),
            "mean_rejected_score": float(pairs["rejected_score"].mean()),
            "mean_chosen_words": rounded(mean_words["chosen"], 1),
            "mean_rejected_words": rounded(mean_words["rejected"], 1),
            "on_policy_fraction": float(pairs["on_policy"].mean()),
            "chosen_source": pairing.chosen_source,
            "max_length_ratio": pairing.max_length_ratio,
            "candidates_dropped": paired.dropped,
            "beta": cat.beta,
            "judge": cat.judge,
            "sample_pairs": markdown_table(sample_pairs(pairs), max_chars=SAMPLE_PAIR_CHARS),
            "review_page": review_page(store, part, JUDGED_PAIRS),
        }
    )


def sample_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """A few pairs spread over the table (seeded), chosen beside rejected, for the UI to show data, not only counts."""
    shown = pairs.sample(min(SAMPLE_PAIRS, pairs.height), seed=0).sort("prompt_id")
    scores = {f"{half}_score": pl.col(f"{half}_score").round(3) for half in ("chosen", "rejected")}
    return shown.select("prompt_id", "chosen", "rejected", **scores)
