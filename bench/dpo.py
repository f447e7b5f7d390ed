"""DPO training throughput and memory: this project's PairDPOTrainer with cached reference log-probs vs. stock TRL
DPOTrainer (which copies the model as reference and runs it every step), same pairs, model and training arguments.

    .venv/bin/python bench/dpo.py                        # tiny VLM (~0.9M), 64 pairs, 12 steps of 8, 3 runs each
    .venv/bin/python bench/dpo.py --size small --write   # ~30M VLM, and append the results to bench/RESULTS.md
    .venv/bin/python bench/dpo.py --runs 5 --steps 20 --batch-size 16 --threads 1

Each run is a fresh subprocess (`--worker`), so peak RSS (ru_maxrss) is that trainer's alone; runs alternate
stock/cached so machine noise hits both alike, and medians are reported. Samples/s counts the pairs of steps 2..n
(step 1 pays one-off warm-up). The reference log-probs are computed once beforehand, as the pipeline caches them
beside the pairs; their one-off cost is reported separately, as is each trainer's setup before its first step (model
load plus stock's reference copy, or the cached trainer's one tokenization pass over the pairs).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vlm_rl_assets.bootstrap.embedded import synthetic_split
from vlm_rl_assets.config import load_config
from vlm_rl_assets.dpo.training import PreferencePair

sys.path.insert(0, str(Path(__file__).parent))
from rollouts import SIZES, build_model, machine  # noqa: E402  (the rollout bench's model builder)

TRAINERS = ("stock", "cached")


def bench_pairs(n: int) -> list[PreferencePair]:
    """n prompts over the default categories, chosen = the reference answer, rejected = the next prompt's."""
    config = load_config()
    share, extra = divmod(n, len(config.categories))
    sizes = {c: share + (i < extra) for i, c in enumerate(config.categories)}
    table, images, references = synthetic_split(
        config.synthetic_categories(), "dpo-bench", sizes, config.bootstrap.seed
    )
    texts = list(table["prompt_text"])
    return [
        PreferencePair(texts[i], imgs, references[i], references[(i + 1) % n] + " " + references[i], beta=0.1)
        for i, imgs in enumerate(images)
    ]


class _StepClock:
    """Times each optimizer step's end, so the first (warm-up) step can be left out, and the first step's start, so
    one-off setup (reference copy, pre-tokenization) is reported too."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self
        self.created = time.perf_counter()
        self.first_begin: float | None = None
        self.ends: list[float] = []

        class Callback(TrainerCallback):
            def on_step_begin(self, *args, **kwargs):
                clock.first_begin = clock.first_begin or time.perf_counter()

            def on_step_end(self, *args, **kwargs):
                clock.ends.append(time.perf_counter())

        self.callback = Callback()


def worker(args: argparse.Namespace) -> None:
    """One training run of `args.worker`; prints {samples_per_s, peak_rss_mib, setup_s} as JSON (setup: building the
    trainer and everything before the first step)."""
    from trl import DPOConfig, DPOTrainer

    from vlm_rl_assets.dpo.training import dpo_trainer
    from vlm_rl_assets.model.chat import preference_example
    from vlm_rl_assets.model.loading import load_model, load_processor
    from vlm_rl_assets.model.trainer import common_args, lazy_dataset
    from vlm_rl_assets.training.settings import TrainingSettings

    torch.set_num_threads(args.threads)
    model_dir, out_dir = Path(args.model), Path(args.scratch) / args.worker
    pairs = bench_pairs(args.pairs)
    settings = TrainingSettings(batch_size=args.batch_size, max_steps=args.steps, log_every=args.steps)
    if args.worker == "cached":
        refs = json.loads(Path(args.refs).read_text())
        pairs = [dataclasses.replace(p, ref_chosen_logps=c, ref_rejected_logps=r) for p, (c, r) in zip(pairs, refs)]
    clock = _StepClock()
    if args.worker == "cached":
        trainer = dpo_trainer(model_dir, out_dir, pairs, settings)
        assert trainer.ref_model is None
    else:
        config = DPOConfig(
            **common_args(out_dir, settings.seed, settings.learning_rate, settings.batch_size, settings.log_every),
            max_steps=settings.max_steps,
            beta=pairs[0].beta,  # every bench pair has the same one
        )
        dataset = lazy_dataset(pairs, lambda p: preference_example(p.prompt_text, p.images, p.chosen, p.rejected))
        trainer = DPOTrainer(
            model=load_model(model_dir), args=config, train_dataset=dataset, processing_class=load_processor(model_dir)
        )
    trainer.add_callback(clock.callback)
    trainer.train()
    seconds = clock.ends[-1] - clock.ends[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    samples_per_s = (len(clock.ends) - 1) * args.batch_size / seconds
    print(
        json.dumps({"samples_per_s": samples_per_s, "peak_rss_mib": peak, "setup_s": clock.first_begin - clock.created})
    )


def run_worker(name: str, args: argparse.Namespace, model_dir: Path, scratch: Path, refs: Path) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--model",
        str(model_dir),
        "--scratch",
        str(scratch),
        "--refs",
        str(refs),
        "--pairs",
        str(args.pairs),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(
    args: argparse.Namespace,
    params: int,
    ref_seconds: float,
    runs: dict[str, list[dict[str, float]]],
    loads: tuple[float, float],
) -> str:
    median = {n: {k: statistics.median(r[k] for r in runs[n]) for k in runs[n][0]} for n in TRAINERS}
    speed = median["cached"]["samples_per_s"] / median["stock"]["samples_per_s"]
    lines = [
        f"## {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} · DPO: stock TRL vs cached-reference PairDPOTrainer · cpu",
        "",
        f"- machine: {machine()}; load average (1 min) {loads[0]:.1f} before the runs, {loads[1]:.1f} after",
        f"- model: random-init {args.size} Qwen2-VL, {params / 1e6:.2f}M parameters",
        f"- workload: {args.pairs} pairs, {args.steps} steps of {args.batch_size}, fp32, same DPOConfig; "
        f"{args.runs} fresh-process runs each, alternating",
        f"- reference log-probs of the {args.pairs} pairs, once: {ref_seconds:.1f} s (cached beside the pairs after)",
        f"- command: `python bench/dpo.py {' '.join(sys.argv[1:])}`",
        "",
        "| trainer | median samples/s | x stock | median peak RSS (MiB) | median setup (s) | every run (samples/s; MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for name in TRAINERS:
        every = "; ".join(f"{r['samples_per_s']:.1f}, {r['peak_rss_mib']:.0f}" for r in runs[name])
        ratio = median[name]["samples_per_s"] / median["stock"]["samples_per_s"]
        lines.append(
            f"| {name} | {median[name]['samples_per_s']:.1f} | {ratio:.2f} | {median[name]['peak_rss_mib']:.0f} "
            f"| {median[name]['setup_s']:.2f} | {every} |"
        )
    memory = median["stock"]["peak_rss_mib"] - median["cached"]["peak_rss_mib"]
    lines += ["", f"Cached: {speed:.2f}x stock's samples/s, {memory:.0f} MiB less peak RSS."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", nargs="?", const="bench/RESULTS.md", help="append the results to this file")
    parser.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    for internal in ("--model", "--scratch", "--refs"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from vlm_rl_assets.dpo.training import reference_logps
    from vlm_rl_assets.model.loading import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir = build_model(scratch / "model", args.size, bf16=False)
        params = sum(p.numel() for p in load_model(model_dir).parameters())
        start = time.perf_counter()
        refs = reference_logps(model_dir, bench_pairs(args.pairs), batch_size=args.batch_size)
        ref_seconds = time.perf_counter() - start
        (scratch / "refs.json").write_text(json.dumps(refs))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in TRAINERS}
        load_before = os.getloadavg()[0]  # the machine is shared: a busy one slows both trainers, unevenly
        for i in range(args.runs):
            for name in TRAINERS:
                runs[name].append(run_worker(name, args, model_dir, scratch, scratch / "refs.json"))
                print(f"run {i + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    text = report(args, params, ref_seconds, runs, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        with Path(args.write).open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
