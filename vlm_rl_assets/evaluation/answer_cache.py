"""A model's bench answers, kept in the store per category: a checkpoint is asked each bench prompt once.

The base model is benchmarked by every category's `benchmark_scores` and again by `release_report` (and each round's
`round_gain` starts from the policy the last one measured): without this, the base's greedy and pass@k answers were
generated twice per run, about a quarter of the demo's benchmark time. The key holds everything that decides the
answers (the checkpoint's content, the engine, the generation settings and seed, the category's prompts), so a changed
model or setting asks again; the judging is not in it, so a changed judge re-scores kept answers without generating.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image

from vlm_rl_assets.evaluation.benchmarks import Progress, bench_answers
from vlm_rl_assets.evaluation.settings import EvalSettings
from vlm_rl_assets.rollouts.engine import Engine
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store, spec_key

ASSET = "benchmark_answers"  # store folder: <category>/<answers key>


@dataclass(frozen=True)
class BenchModel:
    name: str  # base | dpo | policy
    folder: Path
    model_id: str  # its content fingerprint (model/fingerprint.py)


def answers_key(model_id: str, engine: str, settings: EvalSettings, seed: int, prompts: pl.DataFrame) -> str:
    """A hash of everything that decides a model's answers to one category's bench prompts."""
    spec = {
        "model_id": model_id,
        "engine": engine,
        "max_new_tokens": settings.max_new_tokens,
        "samples_per_prompt": settings.samples_per_prompt,
        "temperature": settings.temperature,
        "seed": seed,
        "prompts": prompts.select("prompt_id", "prompt_text", "images").rows(),
    }
    return spec_key(spec)


def models_answers(
    store: Store,
    models: Sequence[BenchModel],
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    open_engine: Callable[[Path], AbstractContextManager[Engine]],
    engine: str,
    settings: EvalSettings,
    seed: int,
    progress: Callable[[str], Progress | None],
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, pl.DataFrame]:
    """Each model's BENCHMARK_ANSWERS on `prompts`: kept ones read, the categories without them generated (one
    engine open at a time, and none for a model whose answers are all kept) and kept."""
    answers = {}
    for model in models:
        keys = {
            category: f"{category}/{answers_key(model.model_id, engine, settings, seed, group)}"
            for (category,), group in prompts.group_by("category", maintain_order=True)
        }
        kept = {
            c: store.read_table(ASSET, k, schemas.BENCHMARK_ANSWERS)
            for c, k in keys.items()
            if store.has_table(ASSET, k)
        }
        missing = {c: k for c, k in keys.items() if c not in kept}
        if kept:
            log(f"bench {model.name}: answers kept from an earlier benchmark of this checkpoint for {sorted(kept)}")
        parts = list(kept.values())
        if missing:
            parts += _generate_answers(store, model, prompts, images, missing, open_engine, settings, seed, progress)
        answers[model.name] = pl.concat(parts)
    return answers


def _generate_answers(
    store: Store,
    model: BenchModel,
    prompts: pl.DataFrame,
    images: Sequence[tuple[Image.Image, ...]],
    keys: dict[str, str],
    open_engine: Callable[[Path], AbstractContextManager[Engine]],
    settings: EvalSettings,
    seed: int,
    progress: Callable[[str], Progress | None],
) -> list[pl.DataFrame]:
    """`model`'s answers to the prompts of the categories `keys` names, generated in one engine opening and each
    category's kept under its key."""
    todo = prompts.with_row_index("_row").filter(pl.col("category").is_in(list(keys)))
    todo_images = [images[i] for i in todo["_row"]]
    with open_engine(model.folder) as opened:
        fresh = bench_answers(
            opened,
            todo.drop("_row"),
            todo_images,
            settings,
            seed,
            lambda stage: progress(f"bench {model.name}" + ("" if stage == "greedy" else f" {stage}")),
        )
    parts = []
    for category, key in keys.items():
        part = fresh.filter(pl.col("category") == category)
        store.write_table(ASSET, key, part, schemas.BENCHMARK_ANSWERS)
        parts.append(part)
    return parts
