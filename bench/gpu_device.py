"""The hf engine's rollout throughput on one CUDA GPU: a random-init ~0.5B Qwen2-VL in bfloat16, built here; with
--leg fsdp2, DPO steps of that model sharded by accelerate's FSDP2 plugin against the same steps unsharded
(bench/sharded_dpo.py); with --leg memory, the peak allocated memory of rollouts, the reference pass and DPO steps of
the ~0.5B and a ~2B model against the memory plan (bench/memory_device.py, bench/memory_plan.py --gpu).

    python bench/gpu_device.py --out $OUT                  # on the GPU: ~0.5B, a sweep of batch sizes, JSON in $OUT
    python bench/gpu_device.py --device cpu --tiny --out /tmp/smoke   # the same path on CPU, in seconds
    python bench/gpu_device.py --leg fsdp2 --out $OUT      # gpu_device_fsdp2.json (CPU: the unsharded run only)
    python bench/gpu_device.py --leg memory --out $OUT --max-seconds 240   # gpu_device_memory.json, ~2-3 minutes

Made for a machine with no network and only torch, torchvision, transformers, accelerate and peft: it imports no
more of the project than the engine and the tiny model's builder (no pydantic, polars, TRL, Dagster or vLLM), builds
its tokenizer and images itself, and keeps every file it writes under --out small (the model goes to a temporary
folder). It writes its JSON after each measurement, so a run cut short still reports what it measured, and
skips the batch sizes (memory leg: the stages) left once --max-seconds have passed.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, uninstalled

import torch  # noqa: E402
from memory_device import MEMORY_WORKLOAD, TWO_B, memory_leg  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from sharded_dpo import fsdp2_leg  # noqa: E402

from vlm_rl_assets.model.loading import load_model  # noqa: E402
from vlm_rl_assets.model.tiny_model import TinyVLMSpec, build_tiny_vlm  # noqa: E402
from vlm_rl_assets.rollouts.engine import GenerationRequest, HFEngine, SamplingParams  # noqa: E402

# Qwen2-0.5B's text shape (head dim 64) under an 8-block Qwen2-VL vision tower: ~0.5B parameters with a small vocab.
HALF_B = TinyVLMSpec(
    hidden_size=896,
    intermediate_size=4864,
    num_layers=24,
    num_heads=14,
    num_kv_heads=2,
    mrope_section=(8, 12, 12),  # sums to head_dim / 2 = 32
    vision_depth=8,
    vision_embed_dim=1280,
    vision_num_heads=16,
    max_pixels=224 * 224,  # up to 64 image tokens
)
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle")
QUESTIONS = ("What colour is the {shape}?", "How many shapes are there?", "Is there a {shape}? Answer yes or no.")


def corpus(n: int, seed: int) -> list[str]:
    """Task-like questions and answers for the tokenizer (the model's weights are random anyway)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
        texts += [rng.choice(QUESTIONS).format(shape=shape), f"Answer: {colour} {shape}, {rng.randint(1, 9)}"]
    return texts


def requests(n: int, seed: int) -> list[GenerationRequest]:
    """n prompts, each with a drawn image of 1-4 coloured shapes at a few sizes (so batches need padding)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        side = rng.choice((112, 168, 224))
        image = Image.new("RGB", (side, side), "white")
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(1, 4)):
            x, y = rng.randrange(side - 24), rng.randrange(side - 24)
            draw.ellipse((x, y, x + 24, y + 24), fill=rng.choice(COLOURS))
        out.append(GenerationRequest(rng.choice(QUESTIONS).format(shape=rng.choice(SHAPES)), (image,)))
    return out


def build(model_dir: Path, spec: TinyVLMSpec, dtype: torch.dtype) -> int:
    """The random-init model saved in `dtype` (which the engine then loads: the checkpoint's dtype); its size."""
    build_tiny_vlm(model_dir, corpus(400, seed=0), seed=0, spec=spec)
    model = load_model(model_dir).to(dtype)
    model.save_pretrained(model_dir)
    return sum(p.numel() for p in model.parameters())


def peak_memory(device: str) -> dict[str, float | None]:
    if not device.startswith("cuda"):
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
    }


def measure(engine: HFEngine, reqs: list[GenerationRequest], params: SamplingParams, device: str) -> dict:
    """One timed `generate` over every request (after the warm-up the caller ran)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    completions = engine.generate(reqs, params)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    samples = [c for group in completions for c in group]
    tokens = sum(c.n_tokens for c in samples)
    return {
        "seconds": round(seconds, 3),
        "samples": len(samples),
        "generated_tokens": tokens,
        "samples_per_s": round(len(samples) / seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "cut_at_max_new_tokens": sum(c.finish_reason == "length" for c in samples),
        **peak_memory(device),
    }


def rollout_leg(args: argparse.Namespace, model_dir: Path, report: dict, write: Callable[[], None]) -> None:
    """The engine's throughput at each batch size, skipping those left once --max-seconds have passed."""
    reqs = requests(args.prompts, seed=1)
    params = SamplingParams(n=args.samples, max_new_tokens=args.max_new_tokens, seed=0)
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        if time.monotonic() - args.started > args.max_seconds:
            report["runs"].append({"batch_size": batch_size, "skipped": f"past --max-seconds {args.max_seconds:g}"})
            continue
        t0 = time.perf_counter()
        with HFEngine(model_dir, device=args.device, batch_size=batch_size) as engine:
            load_seconds = round(time.perf_counter() - t0, 1)
            engine.generate(reqs[:2], SamplingParams(n=2, max_new_tokens=4))  # warm-up: kernels, allocator
            run = {"batch_size": batch_size, "load_seconds": load_seconds, **measure(engine, reqs, params, args.device)}
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        write()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_device.json")
    parser.add_argument("--leg", choices=("rollouts", "fsdp2", "memory"), default="rollouts")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the embedded tiny model and a few prompts: a smoke run")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8, help="per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="256,1024,2048", help="hf engine sequences per call, each measured")
    parser.add_argument(
        "--max-seconds", type=float, default=360, help="no new batch size (memory leg: stage) is started after this"
    )
    parser.add_argument("--steps", type=int, default=5, help="fsdp2 leg: DPO steps of each run")
    args = parser.parse_args()
    if args.tiny:
        args.prompts, args.samples, args.max_new_tokens, args.batch_sizes, args.steps = 4, 2, 4, "4,8", 2
    args.started = time.monotonic()
    return args


WORKLOADS = {
    "rollouts": "{prompts} prompts x {samples} samples x up to {max_new_tokens} new tokens, T=1, top_p=1, one image each",
    "fsdp2": "{steps} sigmoid DPO steps of 4 pairs (one image, 16 random answer tokens each), FSDP2 and not",
    "memory": MEMORY_WORKLOAD,
}
OUT_FILES = {"rollouts": "gpu_device.json", "fsdp2": "gpu_device_fsdp2.json", "memory": "gpu_device_memory.json"}


def one_model_leg(args: argparse.Namespace, work: Path, report: dict, write: Callable[[], None]) -> None:
    """The rollout or fsdp2 leg on the one model they measure (tiny or ~0.5B)."""
    t0 = time.perf_counter()
    n_params = build(work / "model", TinyVLMSpec() if args.tiny else HALF_B, getattr(torch, args.dtype))
    report["model"] = {
        "spec": "tiny" if args.tiny else "0.5B",
        "parameters_m": round(n_params / 1e6, 1),
        "dtype": args.dtype,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    write()
    if args.leg == "rollouts":
        rollout_leg(args, work / "model", report, write)
    else:
        timeout = max(args.max_seconds - (time.monotonic() - args.started), 60)
        report["fsdp2"] = fsdp2_leg(work / "model", args.device, args.steps, work, timeout)
        print(json.dumps(report["fsdp2"]), flush=True)


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "leg": args.leg,
        "workload": WORKLOADS[args.leg].format(**vars(args)),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "runs": [],
    }
    out_file = args.out / OUT_FILES[args.leg]

    def write() -> None:
        out_file.write_text(json.dumps(report, indent=2) + "\n")

    def record(run: dict) -> None:
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        write()

    import accelerate
    import transformers

    report["machine"] |= {"transformers": transformers.__version__, "accelerate": accelerate.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        if args.leg == "memory":
            specs = {"tiny": TinyVLMSpec()} if args.tiny else {"0.5B": HALF_B, "2B": TWO_B}
            built = functools.partial(build, dtype=getattr(torch, args.dtype))
            memory_leg(specs, built, args.device, Path(tmp), args.started + args.max_seconds, report, record)
        else:
            one_model_leg(args, Path(tmp), report, write)
    report["total_seconds"] = round(time.monotonic() - args.started, 1)
    write()
    print(f"wrote {out_file}")


if __name__ == "__main__":
    main()
