"""Filtering and pairing at scale: 125k synthetic prompts x 8 rollouts = 1M rows through the pipeline's own code.

    .venv/bin/python bench/data.py                   # 125k prompts x 8: score+filter+pair 3 times, then filter+pair 3 times
    .venv/bin/python bench/data.py --write           # ...and append the results to bench/RESULTS.md
    .venv/bin/python bench/data.py --score-reps 0    # filter+pair only (scores once, untimed)
    .venv/bin/python bench/data.py --prompts 10000 --reps 5

Rollouts are generated in the embedded tasks' formats (count and shape choice with chain of thought, colour,
structured description, scene description), one fifth each, right with a per-prompt probability, with the
duplicates a sampled policy produces (few phrasings, short answers repeat) and 2% too-short responses.
Each measured stage runs in a fresh subprocess on the tables written to a temporary folder, so its peak
resident memory (`ru_maxrss`) is its own: reading the tables, then `filter_rollouts` (min 2 words, group
unique fraction >= 0.25) and `make_pairs` (margin 0.5, 2 pairs per prompt, length ratio <= 2). The timed
span excludes reading; "score" adds `score_rollouts` with the rule judge, which judges each distinct input once
(3,274 of the 1M rows at the defaults; about 1 s in all, against 30 s judging every row). Medians are reported.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.pairs.filtering import drop_counts, filter_rollouts
from vlm_rl_assets.pairs.pairing import make_pairs
from vlm_rl_assets.prompts.world import COLOURS, NUMBER_WORDS, SHADES, SHAPE_CORNERS, SHAPES
from vlm_rl_assets.store import schemas

SAMPLES = 8
FILTER = {"min_words": 2, "min_group_diversity": 0.25}
PAIRING = {"min_margin": 0.5, "max_pairs_per_prompt": 2, "max_length_ratio": 2.0}
PREFIXES = ["", "", "Let me look. ", "Looking at the image, "]  # a policy's few openings: duplicates arise
HUES, SHADE_NAMES, POSITIONS = list(COLOURS), list(SHADES), ["top left", "top right", "bottom left", "bottom right"]


def pick(options: list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(options, dtype=pl.String).gather(pl.Series(index))


def concat(*parts: str | pl.Series | np.ndarray) -> pl.Series:
    """Element-wise string concatenation of literals, Series and numpy arrays."""
    return pl.select(pl.concat_str([pl.lit(p if isinstance(p, str) else pl.Series(p)) for p in parts])).to_series()


def guesses(rng: np.random.Generator, truth: np.ndarray, n_options: int, p_right: np.ndarray) -> np.ndarray:
    """Per sample: the true option with the prompt's probability, else another one uniformly."""
    truth = np.repeat(truth, SAMPLES)
    wrong = (truth + rng.integers(1, n_options, truth.size)) % n_options
    return np.where(rng.random(truth.size) < np.repeat(p_right, SAMPLES), truth, wrong)


def prefixes(rng: np.random.Generator, n: int) -> pl.Series:
    return pick(PREFIXES, rng.integers(0, len(PREFIXES), n))


def prompt(question: str, answer: pl.Series, answer_type: str, reference: pl.Series, **extra: object) -> dict:
    """A task's prompt columns; `prompt_text` is the question unless given (a template's instruction)."""
    columns = {"question": question, "prompt_text": question, "answer": answer, "answer_type": answer_type}
    return {**columns, "reference": reference, **extra}


def count_task(rng: np.random.Generator, n: int, p: np.ndarray) -> tuple[dict, pl.Series]:
    truth = rng.integers(0, 3, n)  # 1..3 shapes
    steps = [", ".join(NUMBER_WORDS[1 : k + 2]) for k in range(4)]
    question = "How many shapes are in the image?"
    answer = pl.Series((truth + 1).astype(str))
    reference = concat("I count the shapes: ", pick(steps, truth), ". Answer: ", answer)
    instruction = "\nThink step by step, then finish with 'Answer: number'."
    got = guesses(rng, truth, 4, p)
    plain = rng.random(got.size) < 0.1  # some answer without the format
    number = (got + 1).astype(str)
    counted = "I count the shapes: " + np.array(steps)[got] + ". Answer: " + number
    response = concat(prefixes(rng, got.size), np.where(plain, "There are " + number + " shapes.", counted))
    return prompt(question, answer, "number", reference, prompt_text=question + instruction), response


def choice_task(rng: np.random.Generator, n: int, p: np.ndarray) -> tuple[dict, pl.Series]:
    truth = rng.integers(0, len(SHAPES), n)
    letters = [f"({letter})" for letter in "ABCD"]
    reason = [f"The shape has {SHAPE_CORNERS[s]}, so it is a {s}. Answer: " for s in SHAPES]
    options = "\n".join(f"({'ABCD'[i]}) {s}" for i, s in enumerate(SHAPES))
    question = f"Which shape is in the image?\n{options}"
    instruction = "\nThink step by step, then finish with 'Answer: (letter)'."
    reference = concat(pick(reason, truth), pick(letters, truth))
    got = guesses(rng, truth, len(SHAPES), p)
    response = concat(prefixes(rng, got.size), pick(reason, got), pick(letters, got))
    extra = {"prompt_text": question + instruction, "choices": list(SHAPES)}
    return prompt(question, pick(list("ABCD"), truth), "choice", reference, **extra), response


def colour_task(rng: np.random.Generator, n: int, p: np.ndarray) -> tuple[dict, pl.Series]:
    names = [f"{shade} {hue}" for shade in SHADE_NAMES for hue in HUES]
    truth = rng.integers(0, len(names), n)
    got = guesses(rng, truth, len(names), p)
    sentence = rng.random(got.size) < 0.15  # "It is dark blue.": wrong by the text judge, as a real one would be
    response = concat(np.where(sentence, "It is ", ""), pick(names, got), np.where(sentence, ".", ""))
    return prompt("What colour is the shape?", pick(names, truth), "text", pick(names, truth)), response


def describe_task(rng: np.random.Generator, n: int, p: np.ndarray) -> tuple[dict, pl.Series]:
    def fields(hue: np.ndarray, size: np.ndarray, where: np.ndarray) -> pl.Series:
        sizes = pick(["large", "small"], size)
        return concat("colour: ", pick(HUES, hue), "; size: ", sizes, "; position: ", pick(POSITIONS, where))

    truth = (rng.integers(0, len(HUES), n), rng.integers(0, 2, n), rng.integers(0, len(POSITIONS), n))
    answer = fields(*truth)
    field_p = np.sqrt(p)  # each field right more often than the whole answer
    got = [guesses(rng, t, k, field_p) for t, k in zip(truth, (len(HUES), 2, len(POSITIONS)))]
    return prompt("Describe the shape: colour, size and position.", answer, "structured", answer), fields(*got)


def scene_task(rng: np.random.Generator, n: int, p: np.ndarray) -> tuple[dict, pl.Series]:
    names = [f"{hue} {shape}" for hue in HUES for shape in SHAPES]
    truth = rng.integers(0, len(names), n)
    sentence = [f"The image shows a {name} on a grey background." for name in names]
    got = guesses(rng, truth, len(names), p)
    response = concat(prefixes(rng, got.size), pick(sentence, got))
    objects = pick(names, truth).to_list()
    return prompt(
        "Describe the image.", pick(sentence, truth), "open", pick(sentence, truth), objects=objects
    ), response


TASKS = (count_task, choice_task, colour_task, describe_task, scene_task)


def generate(n_prompts: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(prompts, rollouts) with the pipeline's schemas: n_prompts spread over the tasks, SAMPLES rollouts each."""
    rng = np.random.default_rng(seed)
    prompt_parts, rollout_parts = [], []
    for t, task in enumerate(TASKS):
        n = n_prompts // len(TASKS) + (t < n_prompts % len(TASKS))
        columns, response = task(rng, n, rng.random(n))
        ids = [hashlib.sha256(f"{task.__name__}/{i}".encode()).hexdigest()[:16] for i in range(n)]
        short = rng.random(response.len()) < 0.02
        response = pl.Series(
            np.where(short, np.array(["", "Hmm."])[rng.integers(0, 2, short.size)], response.to_numpy())
        )
        objects = [[name] for name in columns.pop("objects", [])]
        choices = columns.pop("choices", [])
        prompt_parts.append(
            pl.DataFrame({"prompt_id": ids}).with_columns(
                category=pl.lit(task.__name__.removesuffix("_task")),
                split=pl.lit("train"),
                images=pl.concat_list(pl.lit("images/") + pl.col("prompt_id") + pl.lit(".png")),
                choices=pl.lit(choices, dtype=pl.List(pl.String)),
                objects=pl.Series(objects or [[]] * n, dtype=pl.List(pl.String)),
                **{k: pl.lit(v) for k, v in columns.items()},
            )
        )
        sample_idx = np.tile(np.arange(SAMPLES, dtype=np.int32), n)
        rollout_parts.append(
            pl.DataFrame({"prompt_id": np.repeat(ids, SAMPLES), "sample_idx": sample_idx, "response": response})
        )
    prompts = pl.concat(prompt_parts, how="diagonal")
    rollouts = pl.concat(rollout_parts).with_columns(
        n_tokens=pl.col("response").str.len_chars().cast(pl.Int32) // 4 + 1,
        finish_reason=pl.lit("stop"),
        policy_id=pl.lit("bench"),
        engine=pl.lit("hf"),
        seed=pl.lit(seed, dtype=pl.Int64),
        temperature=pl.lit(1.0),
        top_p=pl.lit(1.0),
    )
    return schemas.check(prompts, schemas.PROMPTS, "prompts"), schemas.check(rollouts, schemas.ROLLOUTS, "rollouts")


def run_stage(stage: str, folder: Path) -> dict:
    """One measured stage in this process (the parent starts a fresh one per repetition)."""
    prompts = pl.read_parquet(folder / "prompts.parquet")
    source = "rollouts" if stage == "score" else "scored"
    table = pl.read_parquet(folder / f"{source}.parquet")
    start = time.perf_counter()
    timings = {}
    if stage == "score":
        table = score_rollouts(table, prompts).scored
        timings["score_s"] = time.perf_counter() - start
    filtered = filter_rollouts(table, **FILTER)
    timings["filter_s"] = time.perf_counter() - start - sum(timings.values())
    paired = make_pairs(filtered, prompts, beta=0.1, judge_name="rule", **PAIRING)
    timings["pair_s"] = time.perf_counter() - start - sum(timings.values())
    if stage == "score":
        table.write_parquet(folder / "scored.parquet")
    return {
        **timings,
        "total_s": sum(timings.values()),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "rows": filtered.height,
        "drops": drop_counts(filtered),
        "pairs": paired.pairs.height,
        "pairs_dropped": paired.dropped,
        "on_policy_fraction": float(paired.pairs["on_policy"].mean()),
    }


def measure(stage: str, folder: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--dir", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, {cpu}, polars {pl.__version__} ({pl.thread_pool_size()} threads), load average {load}"
    )


def report(args: argparse.Namespace, runs: dict[str, list[dict]], generate_s: float) -> str:
    rows = args.prompts * SAMPLES
    last = runs["filter_pair"][-1]
    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M} · filter+pair of {rows:,} rollouts · cpu",
        "",
        f"- machine: {machine()}",
        f"- workload: {args.prompts:,} prompts x {SAMPLES} samples over 5 task formats, generated in {generate_s:.1f}s; "
        f"filter {FILTER}, pairing {PAIRING}; each repetition a fresh process, reading excluded from the time",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- outcome: {last['drops']}; {last['pairs']:,} pairs (candidates dropped: {last['pairs_dropped']}), "
        f"on-policy fraction {last['on_policy_fraction']:.2f}",
        "",
        "| stage | reps | median s | filter s | pair s | score s | peak RSS GiB (max) | every rep (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage, values in runs.items():
        if not values:
            continue
        med = {
            key: statistics.median(v.get(key, 0.0) for v in values)
            for key in ("total_s", "filter_s", "pair_s", "score_s")
        }
        every = ", ".join(f"{v['total_s']:.2f}" for v in values)
        name = "filter+pair (scores precomputed)" if stage == "filter_pair" else "score+filter+pair (rule judge)"
        score = f"{med['score_s']:.1f}" if stage == "score" else "–"
        peak = max(v["peak_rss_gib"] for v in values)
        cells = [
            name,
            len(values),
            f"{med['total_s']:.2f}",
            f"{med['filter_s']:.2f}",
            f"{med['pair_s']:.2f}",
            score,
            f"{peak:.2f}",
            every,
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--reps", type=int, default=3, help="filter+pair repetitions (scores from the first score run)")
    parser.add_argument(
        "--score-reps", type=int, default=3, help="score+filter+pair repetitions; 0 scores once, untimed"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", nargs="?", const="bench/RESULTS.md", help="append the results to this file")
    parser.add_argument("--stage", choices=["score", "filter_pair"], help=argparse.SUPPRESS)  # a measured subprocess
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.dir)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        prompts, rollouts = generate(args.prompts, args.seed)
        generate_s = time.perf_counter() - start
        prompts.write_parquet(folder / "prompts.parquet")
        rollouts.write_parquet(folder / "rollouts.parquet")
        del prompts, rollouts
        runs: dict[str, list[dict]] = {"score": [], "filter_pair": []}
        for _ in range(max(args.score_reps, 1)):  # the first run also writes the scores filter+pair starts from
            result = measure("score", folder)
            print(f"score+filter+pair: {result['total_s']:.2f}s, peak {result['peak_rss_gib']:.2f} GiB", flush=True)
            runs["score"].append(result)
        runs["score"] = runs["score"][: args.score_reps]
        for _ in range(args.reps):
            result = measure("filter_pair", folder)
            print(f"filter+pair: {result['total_s']:.2f}s, peak {result['peak_rss_gib']:.2f} GiB", flush=True)
            runs["filter_pair"].append(result)
    text = report(args, runs, generate_s)
    print(text)
    if args.write:
        with open(args.write, "a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
