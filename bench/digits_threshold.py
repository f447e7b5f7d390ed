"""How many bootstrap rows a dataset category needs before the embedded base learns it: scikit-learn's handwritten
digits (56x56, ten classes) beside `color` (or the default's five categories), the default bootstrap (batch, learning
rate, SFT examples per synthetic category, 100 dev items per category) for 900 steps with no early stop, for several
bootstrap row counts.

    flock /tmp/cpu.lock .venv/bin/python bench/digits_threshold.py --rows 150,300,600,1200
    flock /tmp/cpu.lock .venv/bin/python bench/digits_threshold.py --rows 150,600 --beside default

Each count trains a fresh base on the digits' first N bootstrap rows (the dataset's hashed bootstrap share, 0.69 of
the rows, so 1200 fit; dev and bench rows are the same for every N) and checks greedy dev accuracy every `--every`
steps. Prints one JSON line per count: the digits' chance level on its dev items (`evaluation/chance.py`), chance
+ 10 points, and each check's per-category accuracy; then a summary table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlm_rl_assets.bootstrap.embedded import DatasetRows, bootstrap_embedded_model, dev_check_items  # noqa: E402
from vlm_rl_assets.bootstrap.settings import BootstrapSettings  # noqa: E402
from vlm_rl_assets.config import DEFAULT_CONFIG_PATH, load_config  # noqa: E402
from vlm_rl_assets.evaluation.chance import chance_level  # noqa: E402
from vlm_rl_assets.prompts.category import category_prompts  # noqa: E402
from vlm_rl_assets.store.local import LocalStore  # noqa: E402
from vlm_rl_assets_tests.digits import write_digits  # noqa: E402

GOAL = 0.10  # points above chance


def config_for(folder: Path, digits: Path, rows: int, steps: int, every: int, beside: str):
    default = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    synthetic = default["categories"] if beside == "default" else {"color": default["categories"]["color"]}
    bootstrap = default["bootstrap"] | {
        "examples_override": {**default["bootstrap"]["examples_override"], "digits": rows},
        "max_steps": steps,
        "eval_every": every,
        "min_mean_accuracy": 1.0,
        "max_mean_accuracy": 1.0,
    }
    if "eval_every_near" in BootstrapSettings.model_fields:  # checks at one cadence, however near a stop band
        bootstrap["eval_every_near"] = every
    config = {
        "model": default["model"],
        "engine": default["engine"],
        "eval": default["eval"],
        "bootstrap": bootstrap,
        "categories": {
            **synthetic,
            "digits": {"source": str(digits), "template": "plain", "bootstrap_fraction": 0.69},
        },
    }
    path = folder / f"pipeline_{beside}_{rows}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def run(folder: Path, digits: Path, rows: int, steps: int, every: int, beside: str) -> dict:
    import torch

    config = config_for(folder, digits, rows, steps, every, beside)
    torch.set_num_threads(config.model.torch_threads)
    store = LocalStore(folder / "store")
    _, table = category_prompts(store, "digits", config.prompt_spec("digits"), skip={"train"})
    prompts = table.prompts.filter(table.prompts["split"].is_in(["bootstrap", "dev"]))
    images = [tuple(store.load_image(uri) for uri in uris) for uris in prompts["images"]]
    dataset = DatasetRows(prompts, images)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    dev, _ = dev_check_items(config.synthetic_categories(), dataset, set(config.categories), config.bootstrap, log)
    chance, rule = chance_level(dev.filter(dev["category"] == "digits"))
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        report = bootstrap_embedded_model(
            Path(out),
            config.bootstrap,
            config.synthetic_categories(),
            config.engine.batch_size,
            config.eval.max_new_tokens,
            log,
            dataset,
        )
    checks = [
        {"step": c.get("step", every * int(c["check"])), **{k: round(c[k], 3) for k in config.categories if k in c}}
        for c in report.checks
    ]
    return {
        "beside": beside,
        "bootstrap_rows": report.sft_rows.get("digits", 0),
        "digits_share_of_sft_rows": round(report.sft_rows.get("digits", 0) / sum(report.sft_rows.values()), 3),
        "digits_dev_items": dev.filter(dev["category"] == "digits").height,
        "chance": round(chance, 3),
        "chance_rule": rule,
        "goal": round(chance + GOAL, 3),
        "reached_at_step": next((c["step"] for c in checks if c["digits"] >= chance + GOAL), None),
        "best": max(c["digits"] for c in checks),
        "final": checks[-1]["digits"],
        "seconds": round(time.monotonic() - start),
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="150,300,600,1200", help="bootstrap row counts, comma-separated")
    parser.add_argument("--steps", type=int, default=900, help="SFT steps (the default config's max_steps)")
    parser.add_argument("--every", type=int, default=150, help="steps between dev checks")
    parser.add_argument(
        "--beside", choices=("color", "default"), default="color", help="color alone, or the default's five categories"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        digits = write_digits(Path(tmp) / "digits")
        for rows in [int(r) for r in args.rows.split(",")]:
            results.append(run(Path(tmp), digits, rows, args.steps, args.every, args.beside))
            print(json.dumps(results[-1]), flush=True)
    print(
        "| beside | bootstrap rows (share) | chance | goal | digits dev accuracy per check | best | at goal from | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        trajectory = ", ".join(f"{c['step']}: {c['digits']:.2f}" for c in r["checks"])
        rows = f"{r['bootstrap_rows']} ({r['digits_share_of_sft_rows']:.0%})"
        print(
            f"| {r['beside']} | {rows} | {r['chance']:.2f} | {r['goal']:.2f} | {trajectory} | {r['best']:.2f} | "
            f"{r['reached_at_step'] or 'never'} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
