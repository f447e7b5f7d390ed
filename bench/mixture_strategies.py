"""Why the mixture policy keeps less than each category's own DPO run: ways of mixing the same judged pairs, on dev.

    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/mixture_strategies.py /tmp/first_runs/avx2-seed0 \
        --strategies scarcest repeat all

Reads a finished first run's folder (`bench/first_runs.py` keeps its pipeline.yaml and store): its base, its judged
pairs and its per-category DPO checkpoints. Trains one mixture policy per strategy from those pairs (with the run's
training settings; `--seeds` repeats each with other sampling seeds) and prints greedy accuracy on the `dev` split per
category: base, each category's own `dpo_checkpoint` on its category, and each strategy. Run it with the kernels the
run was made with: floats differ between them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mixed(pairs: dict[str, pl.DataFrame], strategy: str, seed: int) -> pl.DataFrame:
    """The mixture under `strategy`: `repeat` is the pipeline's (`training/mixture.py`: the scarcer categories' pairs
    repeated up to the richest's count), `scarcest` down-samples every category to the scarcest's count (the earlier
    default), `all` keeps every pair once (natural proportions)."""
    from vlm_rl_assets.training.mixture import balanced_mixture
    from vlm_rl_assets.training.settings import MixtureSettings

    if strategy == "repeat":
        return balanced_mixture(pairs, {c: 1.0 for c in pairs}, seed, MixtureSettings().max_repeat)
    if strategy == "scarcest":
        n = min(df.height for df in pairs.values())
        return pl.concat(df.sample(n=n, seed=seed, shuffle=True) for df in pairs.values()).sample(
            fraction=1.0, seed=seed, shuffle=True
        )
    if strategy == "all":
        return pl.concat(pairs.values()).sample(fraction=1.0, seed=seed, shuffle=True)
    raise ValueError(f"unknown strategy {strategy!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a first run's folder: pipeline.yaml and data/")
    parser.add_argument("--strategies", nargs="+", default=["scarcest", "repeat", "all"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", nargs="+", type=int, default=[], help="training.epochs to try (default: the run's)")
    parser.add_argument(
        "--lrs", nargs="+", type=float, default=[], help="training.learning_rate to try (default: the run's)"
    )
    args = parser.parse_args()
    os.environ["VLM_RL_CONFIG"] = str(args.run / "pipeline.yaml")

    from vlm_rl_assets.dpo.train_pairs import train_pairs
    from vlm_rl_assets.evaluation.benchmarks import bench_prompts, greedy_verdicts
    from vlm_rl_assets.orchestration.benchmarking import bench_judging
    from vlm_rl_assets.orchestration.resources import PipelineResource
    from vlm_rl_assets.rollouts.open import open_engine
    from vlm_rl_assets.store import schemas
    from vlm_rl_assets.store.quarantine import load_prompt_images

    pipeline = PipelineResource.from_file(args.run / "pipeline.yaml")
    config, store = pipeline.config, pipeline.store
    categories = list(config.categories)
    base = pipeline.base_model_dir()
    dev, dev_images, _ = load_prompt_images(
        store,
        bench_prompts(store, categories, "dev"),
        asset="bench",
        category="all",
        max_pixels=config.max_image_pixels,
    )
    judging = bench_judging(config)

    def dev_accuracy(model_dir: Path, only: str | None = None) -> dict[str, float]:
        keep = [i for i, c in enumerate(dev["category"]) if only in (None, c)]
        prompts = dev[keep]
        with open_engine(config.engine, config.model, model_dir) as engine:
            verdicts = greedy_verdicts(
                engine, prompts, [dev_images[i] for i in keep], config.engine.max_new_tokens, judging=judging
            )
        means = verdicts.group_by("category").agg(pl.col("correct").mean())
        return dict(means.iter_rows())

    rows = {"base": dev_accuracy(base)}
    own: dict[str, float] = {}
    for c in categories:
        own |= dev_accuracy(store.local_checkpoint("dpo_checkpoint", c), only=c)
    rows["own dpo_checkpoint"] = own
    pairs = {c: store.read_table("judged_pairs", c, schemas.JUDGED_PAIRS) for c in categories}
    print("pairs per category:", {c: df.height for c, df in pairs.items()}, flush=True)
    policy, loss = config.dpo_settings()  # the mixture's run as the config sets it
    runs = [
        (strategy, seed, epochs, lr)
        for strategy in args.strategies
        for seed in args.seeds
        for epochs in args.epochs or [policy.epochs]
        for lr in args.lrs or [policy.learning_rate]
    ]
    for strategy, seed, epochs, lr in runs:
        settings = policy.model_copy(update={"epochs": epochs, "learning_rate": lr})
        mixture = mixed(pairs, strategy, seed)
        loaded, images, _ = load_prompt_images(
            store, mixture, asset="bench", category="all", max_pixels=config.max_image_pixels
        )
        key = f"{strategy}-seed{seed}-epochs{epochs}-lr{lr:g}"
        trained = train_pairs(
            store,
            loaded,
            images,
            base,
            "mixture_strategies",
            key,
            settings,
            loss,
            model=config.model,
            engine=config.engine,
            health=config.training_health,
            cache_dir=config.storage.cache_path,
            log=print,
        )
        print(
            key,
            "steps",
            trained.result.history[-1].get("step"),
            "train_runtime",
            trained.result.history[-1].get("train_runtime"),
            flush=True,
        )
        rows[f"{key} ({mixture.height} pairs)"] = dev_accuracy(store.local_checkpoint("mixture_strategies", key))
    print(f"\ndev greedy accuracy, {args.run.name}\n")
    print("| model | " + " | ".join(categories) + " | mean | vs base |")
    print("|---|" + "---|" * (len(categories) + 2))
    base_mean = sum(rows["base"].values()) / len(categories)
    for name, acc in rows.items():
        mean = sum(acc[c] for c in categories) / len(categories)
        cells = " | ".join(f"{acc[c]:.3f}" for c in categories)
        print(f"| {name} | {cells} | {mean:.3f} | {100 * (mean - base_mean):+.1f} |")


if __name__ == "__main__":
    main()
