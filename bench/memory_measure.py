"""Peak CPU tensor memory of each stage (rollouts, DPO, GRPO) run through the project's own code, on the tiny VLM and
a ~30M one: the measurements issue 28's memory predictor (vlm_rl_assets/planning/plan.py) is checked against.

    flock /tmp/cpu.lock .venv/bin/python bench/memory_measure.py --out bench/memory_measure.json   # ~10 min, 2 cores
    .venv/bin/python bench/memory_measure.py --models tiny --stages dpo,grpo --out /tmp/m.json   # some cells only
    .venv/bin/python bench/memory_measure.py --check                     # the method check only
    .venv/bin/python bench/memory_measure.py --table bench/memory_measure.json   # RESULTS.md's tables of a report

Method. torch on CPU keeps no `max_memory_allocated`, so each stage runs under the PyTorch profiler with
`profile_memory=True`, started before the model is loaded: every allocation and free of torch's CPU allocator is then
an event with its pointer, signed size and time (`kineto_results.experimental_event_tree()`). Summed in time order
they give the live-bytes curve of the tensors the stage allocated: its maximum is the stage's peak; its value when the
first model load returns is the weights. The stage's phases are marked with `record_function` ranges around the
project's and its libraries' methods (model load, trainer construction, train, training step, generate, loss,
backward, the vision tower; torch marks the optimizer step itself), so the peak is attributed to a phase, and the
bytes live at the peak are split by what allocated them (`peak_breakdown`: weights, optimizer states, backward,
activations, TRL's fused LM head, KV cache, ...), with the largest live tensors listed. Only the main thread's
allocations are seen (the profiler's memory hook is thread-local): on CPU that is all of them (autograd runs CPU
backward on the calling thread, data loading has no workers). Memory outside torch's allocator (Python objects, PIL
images, numpy arrays, the profiler's own buffers) is not counted; the process's RSS high-water mark over the stage is
reported beside it for scale (profiler buffers included), and `--rss-check` runs cells once more without the profiler
for a plain RSS high-water mark. RSS can also read below the tensor peak: pages of an allocated but never written
buffer are not resident (TRL's LM-head tile is 32768 columns wide whatever the vocabulary).

Each cell (model x stage) runs in a fresh process (`--one`), so nothing allocated by an earlier cell is freed inside a
later one's trace. `method_check()` validates the method on a toy: 100 MB allocated and freed, then 50 MB: the peak
must read 100 MB, as must the allocator's own running total (`total_allocated`, recorded with each event).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other bench scripts

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

MB = 1e6
LABEL = "mm:"  # prefix of the phase ranges this script marks
OPTIMIZER = "Optimizer.step#"  # torch's own range around every optimizer step
LM_HEAD = "ChunkedLogProbFunction"  # TRL's fused LM head + log-softmax (forward and backward), an autograd function
MODELS = {"tiny": "tiny", "30m": "small"}  # this script's name -> bench/rollouts.py's SIZES key
WORDS = (
    *("the", "a", "red", "green", "blue", "yellow", "purple", "circle", "square", "triangle", "is", "are", "left"),
    *("right", "of", "above", "below", "there", "two", "three", "shapes", "answer", "colour", "count", "small"),
    *("large", "and", "image", "what", "how", "many"),
)

# --------------------------------------------------------------------------------------------------------------------
# The trace: allocations and phase ranges from the profiler, and what they add up to.


@dataclasses.dataclass
class Trace:
    """A profiled stretch of code: its allocator events in time order and its marked phase ranges."""

    times: list[int] = dataclasses.field(default_factory=list)  # ns
    sizes: list[int] = dataclasses.field(default_factory=list)  # + allocated, - freed
    ptrs: list[int] = dataclasses.field(default_factory=list)
    totals: list[int] = dataclasses.field(default_factory=list)  # the allocator's running total after the event
    ops: list[str] = dataclasses.field(default_factory=list)  # the innermost 6 ops or ranges it happened in
    phases: list[str] = dataclasses.field(default_factory=list)  # the marked phases it happened in, outer/inner
    ranges: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)  # (phase path, start, end)
    events: int = 0  # profiler events of every kind
    live: list[int] = dataclasses.field(default_factory=list)  # the live-bytes curve, after each event

    @classmethod
    def from_profile(cls, prof: profile) -> Trace:
        from torch._C._profiler import _EventType

        rows: list[tuple[int, int, int, int, int, str, str]] = []
        trace = cls()
        stack = [(root, "") for root in reversed(prof.profiler.kineto_results.experimental_event_tree())]
        order = 0
        while stack:  # depth first, children in order: each thread's events in the order they happened
            event, phase = stack.pop()
            trace.events += 1
            if event.tag == _EventType.Allocation:
                fields = event.extra_fields
                op = " < ".join(_ancestors(event, 6))
                rows.append(
                    (event.start_time_ns, order, fields.alloc_size, fields.ptr, fields.total_allocated, op, phase)
                )
                order += 1
                continue
            name = event.name
            if name.startswith(LABEL) or name.startswith(OPTIMIZER):
                short = name[len(LABEL) :] if name.startswith(LABEL) else "optimizer_step"
                phase = f"{phase}/{short}" if phase else short
                trace.ranges.append((phase, event.start_time_ns, event.end_time_ns))
            stack.extend((child, phase) for child in reversed(event.children))
        rows.sort()
        live = 0
        for t, _, size, ptr, total, op, phase in rows:
            live += size
            trace.times.append(t)
            trace.sizes.append(size)
            trace.ptrs.append(ptr)
            trace.totals.append(total)
            trace.ops.append(op)
            trace.phases.append(phase)
            trace.live.append(live)
        trace.ranges.sort(key=lambda r: r[1])
        return trace

    def peak_index(self, start: int | None = None, end: int | None = None) -> int | None:
        """The event after which the most bytes were live, within [start, end] ns (None: the whole trace)."""
        lo = 0 if start is None else bisect.bisect_left(self.times, start)
        hi = len(self.times) if end is None else bisect.bisect_right(self.times, end)
        if lo >= hi:
            return None
        return max(range(lo, hi), key=self.live.__getitem__)

    @property
    def peak(self) -> int:
        index = self.peak_index()
        return 0 if index is None else max(0, self.live[index])

    def live_at(self, t: int) -> int:
        """Bytes live at time t (ns): after every event up to it."""
        index = bisect.bisect_right(self.times, t) - 1
        return self.live[index] if index >= 0 else 0

    def first_range(self, phase_suffix: str) -> tuple[str, int, int] | None:
        return next((r for r in self.ranges if r[0].split("/")[-1] == phase_suffix), None)

    def phase_peaks(self) -> dict[str, dict[str, Any]]:
        """Per marked phase (its path): how often it ran, the most bytes live during any of its runs, and the bytes
        live when its first run started and when it ended."""
        out: dict[str, dict[str, Any]] = {}
        for path, start, end in self.ranges:
            index = self.peak_index(start, end)
            peak = max(self.live_at(start), self.live[index] if index is not None else 0)
            entry = out.setdefault(
                path,
                {"runs": 0, "peak_bytes": 0, "live_at_start": self.live_at(start), "live_at_end": self.live_at(end)},
            )
            entry["runs"] += 1
            entry["peak_bytes"] = max(entry["peak_bytes"], peak)
        return out

    def live_at_peak(self, top: int = 10) -> dict[str, Any]:
        """The tensors live at the peak: their bytes by the phase that allocated them, and the largest of them."""
        index = self.peak_index()
        if index is None:
            return {"by_phase": {}, "largest": []}
        live: dict[int, int] = {}
        untracked = 0
        for i in range(index + 1):
            size, ptr = self.sizes[i], self.ptrs[i]
            if size > 0:
                live[ptr] = i
            elif live.pop(ptr, None) is None:
                untracked -= size
        by_phase: Counter[str] = Counter()
        for i in live.values():  # TRL's fused LM head apart: its buffers are a term of their own
            head = "/lm_head" if LM_HEAD in self.ops[i] else ""
            by_phase[(self.phases[i] or "(unmarked)") + head] += self.sizes[i]
        largest = sorted(live.values(), key=lambda i: -self.sizes[i])[:top]
        return {
            "by_phase": dict(by_phase.most_common()),
            "largest": [{"bytes": self.sizes[i], "op": self.ops[i], "phase": self.phases[i]} for i in largest],
            "frees_of_untraced_bytes": untracked,  # tensors allocated before the trace and freed in it (expect ~0)
        }

    def allocator_peak(self) -> int:
        """The peak by the CPU allocator's own running total (relative to the trace's start), the summed curve's
        cross-check. Blocks reported with a total of 0 are missing from it (the model loader's single block holding
        all the weights is one), so only the method check reads it."""
        return max(self.totals) - (self.totals[0] - self.sizes[0]) if self.totals else 0

    def summary(self) -> dict[str, Any]:
        index = self.peak_index()
        load = self.first_range("load_model")
        train = self.first_range("train")
        at_peak = self.live_at_peak()
        return {
            "weights_bytes": self.live_at(load[2]) if load else None,
            "live_at_train_start_bytes": self.live_at(train[1]) if train else None,
            "peak_bytes": self.peak,
            "peak_phase": self.phases[index] if index is not None else None,
            "peak_op": self.ops[index] if index is not None else None,
            "end_bytes": self.live[-1] if self.live else 0,
            "allocations": sum(s > 0 for s in self.sizes),
            "profiler_events": self.events,
            "live_at_peak_by_phase": at_peak["by_phase"],
            "largest_live_at_peak": at_peak["largest"],
            "frees_of_untraced_bytes": at_peak.get("frees_of_untraced_bytes", 0),
            "phases": self.phase_peaks(),
        }


def _ancestors(event: Any, n: int) -> list[str]:
    """The names of the innermost `n` ops (or marked ranges) an event happened in, innermost first."""
    names = []
    parent = event.parent
    while parent is not None and len(names) < n:
        names.append(parent.name)
        parent = parent.parent
    return names


@contextlib.contextmanager
def traced() -> Iterator[dict[str, Trace]]:
    """Profile the block's CPU allocations; the yielded dict holds the `Trace` under "trace" once the block ends."""
    out: dict[str, Trace] = {}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        yield out
    out["trace"] = Trace.from_profile(prof)


def rss_bytes() -> int:
    """Resident set size now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def method_check() -> dict[str, Any]:
    """100 MB allocated and freed, then 50 MB: the trace's peak must read 100 MB (within 1%), its end 0."""
    rss_before = rss_bytes()
    with traced() as result:
        with record_function(LABEL + "big"):
            a = torch.empty(100_000_000, dtype=torch.uint8)
            a.fill_(1)  # touch the pages, for the RSS line
            del a
        with record_function(LABEL + "small"):
            b = torch.empty(50_000_000, dtype=torch.uint8)
            b.fill_(1)
            del b
    trace = result["trace"]
    phases = trace.phase_peaks()
    return {
        "expected_peak_bytes": 100_000_000,
        "peak_bytes": trace.peak,
        "peak_bytes_allocator_total": trace.allocator_peak(),
        "peak_bytes_second_range": phases["small"]["peak_bytes"],
        "end_bytes": trace.live[-1],
        "rss_peak_delta_bytes": max_rss_bytes() - rss_before,
        "ok": abs(trace.peak - 100_000_000) <= 1_000_000 and abs(phases["small"]["peak_bytes"] - 50_000_000) <= 500_000,
    }


# --------------------------------------------------------------------------------------------------------------------
# Marking phases and recording what the model is fed, by wrapping methods for the duration of a stage.


@contextlib.contextmanager
def _wrapped(owner: Any, name: str, make: Callable[[Callable], Callable]) -> Iterator[None]:
    original = vars(owner)[name]  # defined on `owner` itself: restoring puts back exactly what was there
    setattr(owner, name, make(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def _labelled(label: str) -> Callable[[Callable], Callable]:
    def make(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with record_function(LABEL + label):
                return fn(*args, **kwargs)

        return wrapper

    return make


@dataclasses.dataclass
class Seen:
    """What the stage showed the model: forward shapes, the trainer's parameter counts."""

    shapes: Counter = dataclasses.field(default_factory=Counter)  # (kind, rows, width) -> calls
    past: dict = dataclasses.field(default_factory=dict)  # (kind, rows, width) -> (min, max) cached length
    trainer: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self, kind: str, rows: int, width: int, past: int = 0) -> None:
        key = (kind, rows, width)
        self.shapes[key] += 1
        low, high = self.past.get(key, (past, past))
        self.past[key] = (min(low, past), max(high, past))

    def shape_table(self) -> list[dict[str, Any]]:
        return [
            {"kind": kind, "rows": rows, "width": width, "calls": calls, "cached": list(self.past[(kind, rows, width)])}
            for (kind, rows, width), calls in sorted(self.shapes.items())
        ]


def param_counts(model: torch.nn.Module) -> dict[str, Any]:
    """Total, vision tower and trainable parameters (LoRA adapters counted apart from the base), and the dtype."""
    from vlm_rl_assets.training.policy import vision_tower

    params = list(model.named_parameters())
    adapters = sum(p.numel() for n, p in params if "lora_" in n)
    return {
        "total": sum(p.numel() for _, p in params) - adapters,
        "vision": sum(p.numel() for n, p in vision_tower(model).named_parameters() if "lora_" not in n),
        "lora": adapters,
        "trainable": sum(p.numel() for _, p in params if p.requires_grad),
        "dtype": str(next(p for _, p in params).dtype).removeprefix("torch."),
        "bytes": sum(p.numel() * p.element_size() for _, p in params),
    }


@contextlib.contextmanager
def instrumented(seen: Seen) -> Iterator[None]:
    """Phase ranges around the methods a stage runs through, and `seen` filled with what the model was fed."""
    import accelerate
    import transformers
    import trl
    from transformers.generation.utils import GenerationMixin
    from transformers.models.qwen2_vl import modeling_qwen2_vl as qwen

    from vlm_rl_assets.model import loading
    from vlm_rl_assets.rollouts.engine import HFEngine
    from vlm_rl_assets.training import policy

    def cached_length(kwargs: dict[str, Any]) -> int:
        cache = kwargs.get("past_key_values")
        return int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0

    def shaped(kind: str) -> Callable[[Callable], Callable]:
        def make(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                x = args[0] if args else kwargs.get("input_ids")
                if x is None:
                    x = kwargs.get("inputs_embeds")
                if x is not None:
                    seen.record(kind, int(x.shape[0]), int(x.shape[1]), cached_length(kwargs))
                return fn(self, *args, **kwargs)

            return wrapper

        return make

    def vision(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            grid = args[0] if args else kwargs.get("grid_thw")
            seen.record("vision", len(grid) if grid is not None else 0, int(hidden_states.shape[0]))
            with record_function(LABEL + "vision"):
                return fn(self, hidden_states, *args, **kwargs)

        return wrapper

    def counted(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            reference = getattr(self, "ref_model", None)
            seen.trainer = {
                "params": param_counts(self.model),
                "reference_params": param_counts(reference)["total"] if isinstance(reference, torch.nn.Module) else 0,
                "optim": str(self.args.optim),
                "per_device_train_batch_size": self.args.per_device_train_batch_size,
                "gradient_checkpointing": self.args.gradient_checkpointing,
            }
            with record_function(LABEL + "train"):
                return fn(self, *args, **kwargs)

        return wrapper

    with contextlib.ExitStack() as stack:
        for owner, name, make in (
            (loading, "load_model", _labelled("load_model")),
            (policy, "load_model", _labelled("load_model")),
            (HFEngine, "generate", _labelled("engine_generate")),
            (trl.DPOTrainer, "__init__", _labelled("trainer_init")),
            (trl.GRPOTrainer, "__init__", _labelled("trainer_init")),
            (transformers.Trainer, "train", counted),
            (transformers.Trainer, "training_step", _labelled("training_step")),
            (trl.DPOTrainer, "compute_loss", _labelled("compute_loss")),
            (trl.DPOTrainer, "compute_ref_log_probs", _labelled("ref_logps")),
            (trl.GRPOTrainer, "compute_loss", _labelled("compute_loss")),
            (trl.GRPOTrainer, "_generate_and_score_completions", _labelled("generate_and_score")),
            (trl.GRPOTrainer, "_get_per_token_logps_and_entropies", _labelled("logps")),
            (accelerate.Accelerator, "backward", _labelled("backward")),
            (GenerationMixin, "generate", _labelled("generate")),
            (qwen.Qwen2VLForConditionalGeneration, "forward", shaped("model")),
            (qwen.Qwen2VLTextModel, "forward", shaped("lm")),
            (qwen.Qwen2VisionTransformerPretrainedModel, "forward", vision),
        ):
            stack.enter_context(_wrapped(owner, name, make))
        yield


# --------------------------------------------------------------------------------------------------------------------
# The stages' inputs: prompts of a given token count, images at the model's largest size.


def text_of(tokenizer: Any, n_tokens: int, rng: random.Random, exact: bool = False) -> str:
    """Task-like words until the text is `n_tokens` tokens long (or a word's tokens more; exactly, with `exact`)."""
    while True:
        words: list[str] = []
        while (length := len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"])) < n_tokens:
            words.append(rng.choice(WORDS))
        if length == n_tokens or not exact:
            return " ".join(words)


def image_of(side: int, rng: random.Random) -> Image.Image:
    """A side x side picture of 1-4 coloured discs."""
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 4)):
        x, y, r = rng.randrange(side - 24), rng.randrange(side - 24), rng.randint(8, 24)
        draw.ellipse((x, y, x + r, y + r), fill=rng.choice(("red", "green", "blue", "yellow", "purple")))
    return image


def max_side(model_dir: Path) -> int:
    """The side of the largest square image the processor keeps as is: its longest_edge pixels, in 28-pixel steps."""
    from vlm_rl_assets.model.loading import load_processor

    image = load_processor(model_dir).image_processor
    step = image.patch_size * image.merge_size
    return int(math.isqrt(image.size["longest_edge"]) // step * step)


def prompt_tokens(processor: Any, text: str, images: tuple[Image.Image, ...]) -> int:
    """The prompt's tokens as the engine and the trainers feed it: chat template, image tokens expanded."""
    from vlm_rl_assets.rollouts.engine import GenerationRequest, chat_prompt

    request = GenerationRequest(text, images)
    encoded = processor(text=[chat_prompt(processor, request)], images=[list(images)], add_special_tokens=False)
    return len(encoded["input_ids"][0])


def _stats(values: list[int | float]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "mean": round(statistics.fmean(values), 1), "max": max(values)}


# --------------------------------------------------------------------------------------------------------------------
# The stages, each through the project's own entry point.


@dataclasses.dataclass(frozen=True)
class Cell:
    """One measurement: a model folder, a stage and its options."""

    model: str  # tiny | 30m
    model_dir: str
    stage: str  # rollouts | rollouts_n1 | dpo_reference | dpo | dpo_sft | dpo_gc | dpo_lora | grpo
    seed: int = 0
    profiled: bool = True  # False: no profiler, no phase marks, only the RSS high-water mark


STAGES = ("rollouts", "rollouts_n1", "dpo_reference", "dpo", "dpo_sft", "dpo_gc", "dpo_lora", "grpo")
DPO_BATCH, DPO_STEPS = 16, 3  # step 2 on runs with the optimizer's states already allocated (AdamW makes them lazily)
GRPO_GENERATIONS, GRPO_PROMPTS, GRPO_STEPS, GRPO_BETA = 8, 4, 2, 0.04
MAX_NEW_TOKENS, ENGINE_BATCH = 40, 64  # default_config.yaml's engine.max_new_tokens and engine.batch_size
PROMPT_WORDS, ANSWER_WORDS = (20, 30), (30, 40)  # text tokens per prompt and per DPO answer


def _prompts(
    processor: Any, n: int, side: int, rng: random.Random, same_length: bool = False
) -> list[tuple[str, tuple[Image.Image, ...]]]:
    """n prompts of PROMPT_WORDS text tokens, each with one side x side image; `same_length`: all of the range's
    middle length."""
    lengths = [sum(PROMPT_WORDS) // 2 if same_length else rng.randint(*PROMPT_WORDS) for _ in range(n)]
    return [(text_of(processor.tokenizer, k, rng, exact=same_length), (image_of(side, rng),)) for k in lengths]


def run_rollouts(cell: Cell, n: int) -> Callable[[], dict[str, Any]]:
    """HFEngine as the rollouts asset drives it: engine.batch_size sequences per generate call, `n` samples per prompt
    (8: the rollouts' samples_per_prompt; 1: one prompt per sequence, as a benchmark's greedy pass batches them)."""
    from vlm_rl_assets.model.loading import load_processor
    from vlm_rl_assets.rollouts.engine import GenerationRequest, HFEngine, SamplingParams

    processor = load_processor(cell.model_dir)
    rng = random.Random(cell.seed)
    prompts = _prompts(processor, 2 * ENGINE_BATCH // n, max_side(Path(cell.model_dir)), rng)  # two generate calls
    requests = [GenerationRequest(text, images) for text, images in prompts]
    inputs = {
        "prompts": len(requests),
        "samples_per_prompt": n,
        "engine_batch_size": ENGINE_BATCH,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompt_tokens": _stats([prompt_tokens(processor, t, i) for t, i in prompts]),
        "prompt_text_tokens": _stats([len(processor.tokenizer(t)["input_ids"]) for t, _ in prompts]),
    }

    def run() -> dict[str, Any]:
        with HFEngine(cell.model_dir, device="cpu", batch_size=ENGINE_BATCH) as engine:
            counts = param_counts(engine.model)
            completions = engine.generate(requests, SamplingParams(n=n, max_new_tokens=MAX_NEW_TOKENS, seed=0))
        lengths = [c.n_tokens for group in completions for c in group]
        return {"params": counts, **inputs, "completion_tokens": _stats(lengths)}

    return run


def _pairs(cell: Cell, n: int) -> tuple[list[Any], dict[str, Any]]:
    from vlm_rl_assets.dpo.training import PreferencePair
    from vlm_rl_assets.model.loading import load_processor

    processor = load_processor(cell.model_dir)
    tokenizer = processor.tokenizer
    rng = random.Random(cell.seed)
    pairs = [
        PreferencePair(
            text,
            images,
            chosen=text_of(tokenizer, rng.randint(*ANSWER_WORDS), rng),
            rejected=text_of(tokenizer, rng.randint(*ANSWER_WORDS), rng),
            beta=0.1,
            ref_chosen_logps=-60.0,  # cached, as dpo_checkpoint passes them: no reference model is loaded
            ref_rejected_logps=-62.0,
        )
        for text, images in _prompts(processor, n, max_side(Path(cell.model_dir)), rng)
    ]

    def answer(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return pairs, {
        "pairs": n,
        "prompt_tokens": _stats([prompt_tokens(processor, p.prompt_text, p.images) for p in pairs]),
        "prompt_text_tokens": _stats([answer(p.prompt_text) for p in pairs]),
        "chosen_tokens": _stats([answer(p.chosen) for p in pairs]),
        "rejected_tokens": _stats([answer(p.rejected) for p in pairs]),
    }


def run_dpo(cell: Cell, scratch: Path) -> Callable[[], dict[str, Any]]:
    """dpo_train as dpo_checkpoint runs it (reference log-probs cached), DPO_STEPS steps of DPO_BATCH pairs; the stage
    name picks the loss and the variant: dpo (DPOSettings' default, sigmoid), dpo_sft (default_config.yaml's
    [sigmoid, sft]), dpo_gc ([sigmoid, sft] with gradient checkpointing), dpo_lora ([sigmoid, sft], LoRA's defaults)."""
    from vlm_rl_assets.dpo.settings import DPOSettings
    from vlm_rl_assets.dpo.training import dpo_train
    from vlm_rl_assets.training.settings import LoRASettings, TrainingSettings

    pairs, inputs = _pairs(cell, DPO_BATCH * DPO_STEPS)
    loss = DPOSettings() if cell.stage == "dpo" else DPOSettings(loss_type=("sigmoid", "sft"))
    settings = TrainingSettings(
        batch_size=DPO_BATCH,
        max_steps=DPO_STEPS,
        log_every=1,
        gradient_checkpointing=cell.stage == "dpo_gc",
        lora=LoRASettings() if cell.stage == "dpo_lora" else None,
    )
    options = {
        "batch_size": DPO_BATCH,
        "max_steps": DPO_STEPS,
        "loss_type": list(loss.loss_type),
        "gradient_checkpointing": settings.gradient_checkpointing,
        "lora": settings.lora.model_dump() if settings.lora else None,
    }

    def run() -> dict[str, Any]:
        result = dpo_train(cell.model_dir, scratch / "dpo", pairs, settings, loss)
        return {**inputs, **options, "steps": result.steps, "input_tokens": result.input_tokens}

    return run


def run_dpo_reference(cell: Cell) -> Callable[[], dict[str, Any]]:
    """reference_logps as judged_pairs' cache fills them: one no-grad pass of the base model over the pairs."""
    from vlm_rl_assets.dpo.training import reference_logps

    pairs, inputs = _pairs(cell, 2 * DPO_BATCH)
    pairs = [dataclasses.replace(p, ref_chosen_logps=None, ref_rejected_logps=None) for p in pairs]

    def run() -> dict[str, Any]:
        reference_logps(cell.model_dir, pairs, batch_size=DPO_BATCH)
        return {**inputs, "batch_size": DPO_BATCH}

    return run


def length_reward(completions: list[Any], **_: Any) -> list[float]:
    """A trivial reward with spread: the completion's length, modulo 7."""
    return [float(len(str(c)) % 7) for c in completions]


def run_grpo(cell: Cell, scratch: Path) -> Callable[[], dict[str, Any]]:
    """grpo_train as grpo_checkpoint runs it: GRPO_PROMPTS prompts x GRPO_GENERATIONS completions per step, up to
    MAX_NEW_TOKENS tokens each, KL beta GRPO_BETA (a reference copy of the model is loaded), GRPO_STEPS steps."""
    from vlm_rl_assets.grpo.settings import GRPOSettings
    from vlm_rl_assets.grpo.training import RLPrompt, grpo_train
    from vlm_rl_assets.model.loading import load_processor
    from vlm_rl_assets.training.settings import TrainingSettings

    processor = load_processor(cell.model_dir)
    rng = random.Random(cell.seed)
    # One prompt length: TRL 1.16 builds the logps pass's mm_token_type_ids with the tokenizer's padding side
    # (right, on these tokenizers) but its prompt ids left-padded, so prompts of different lengths misalign Qwen2-VL's
    # M-RoPE positions (a crash in get_rope_index once a row is padded past its image's start)
    prompts = _prompts(processor, GRPO_PROMPTS * GRPO_STEPS, max_side(Path(cell.model_dir)), rng, same_length=True)
    rl_prompts = [RLPrompt(f"p{i}", text, images) for i, (text, images) in enumerate(prompts)]
    grpo = GRPOSettings(
        num_generations=GRPO_GENERATIONS,
        prompts_per_step=GRPO_PROMPTS,
        max_completion_length=MAX_NEW_TOKENS,
        beta=GRPO_BETA,
    )
    settings = TrainingSettings(max_steps=GRPO_STEPS, log_every=1)
    inputs = {
        "prompts": len(rl_prompts),
        **grpo.model_dump(),
        "max_steps": GRPO_STEPS,
        "prompt_tokens": _stats([prompt_tokens(processor, t, i) for t, i in prompts]),
        "prompt_text_tokens": _stats([len(processor.tokenizer(t)["input_ids"]) for t, _ in prompts]),
    }

    def run() -> dict[str, Any]:
        result = grpo_train(cell.model_dir, scratch / "grpo", rl_prompts, [length_reward], settings, grpo)
        logged = [entry for entry in result.history if "completions/mean_length" in entry]
        return {
            **inputs,
            "steps": result.steps,
            "completion_tokens": {
                "min": min(e["completions/min_length"] for e in logged),
                "mean": round(statistics.fmean(e["completions/mean_length"] for e in logged), 1),
                "max": max(e["completions/max_length"] for e in logged),
            },
        }

    return run


def measure(cell: Cell) -> dict[str, Any]:
    """Run one cell's stage in this process under the profiler: what it ran on and the memory it took."""
    with tempfile.TemporaryDirectory() as scratch:
        if cell.stage.startswith("rollouts"):
            run = run_rollouts(cell, n=8 if cell.stage == "rollouts" else 1)
        elif cell.stage == "dpo_reference":
            run = run_dpo_reference(cell)
        elif cell.stage.startswith("dpo"):
            run = run_dpo(cell, Path(scratch))
        elif cell.stage == "grpo":
            run = run_grpo(cell, Path(scratch))
        else:
            raise ValueError(f"unknown stage {cell.stage!r}; one of {', '.join(STAGES)}")
        seen = Seen()
        rss_before = rss_bytes()
        start = time.perf_counter()
        if not cell.profiled:
            run()
            return {
                "model": cell.model,
                "stage": cell.stage,
                "profiled": False,
                "rss_before_bytes": rss_before,
                "rss_peak_delta_bytes": max_rss_bytes() - rss_before,
                "wall_seconds": round(time.perf_counter() - start, 1),
            }
        with traced() as result, instrumented(seen), record_function(LABEL + "stage"):
            ran = run()
        wall = time.perf_counter() - start
        rss_peak = max_rss_bytes()
    trace = result["trace"]
    return {
        "model": cell.model,
        "stage": cell.stage,
        **ran,
        "trainer": seen.trainer,
        "forward_shapes": seen.shape_table(),
        "memory": trace.summary(),
        "rss_before_bytes": rss_before,
        "rss_peak_delta_bytes": rss_peak - rss_before,  # the profiler's event buffers included
        "wall_seconds": round(wall, 1),
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------------------------------
# The report.


def model_facts(model_dir: Path) -> dict[str, Any]:
    from vlm_rl_assets.model.loading import load_model

    model = load_model(model_dir)
    text, vision = model.config.text_config, model.config.vision_config
    return {
        **param_counts(model),
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_layers": text.num_hidden_layers,
        "num_heads": text.num_attention_heads,
        "num_kv_heads": text.num_key_value_heads,
        "vision_depth": vision.depth,
        "vision_embed_dim": vision.embed_dim,
        "max_side_px": max_side(model_dir),
        "image_tokens": (max_side(model_dir) // (vision.patch_size * vision.spatial_merge_size)) ** 2,
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
    }


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / MB:,.1f}"


def _tokens(stats: dict[str, float] | None) -> str:
    return "–" if not stats else f"{stats['mean']:g} ({stats['min']:g}-{stats['max']:g})"


PARTS = {  # the innermost marked phase an allocation happened in -> what it is, for the breakdown at the peak
    "load_model": "weights",
    "trainer_init": "trainer init",
    "optimizer_step": "optimizer",
    "backward": "backward",
    "compute_loss": "forward",
    "ref_logps": "forward",
    "generate": "generation",
    "engine_generate": "generation",
    "generate_and_score": "generation",
    "training_step": "batch",
    "train": "batch",
    "vision": "vision tower",
    "lm_head": "LM head",
}
PART_NAMES = (
    *("weights", "trainer init", "optimizer", "backward", "forward", "vision tower", "LM head", "generation", "batch"),
    "other",
)


def peak_breakdown(run: dict[str, Any]) -> dict[str, int]:
    """The bytes live at a run's peak by what allocated them (PARTS; GRPO's reference log-probs count as generation,
    its policy's as forward): weights, the trainer's construction (GRPO's reference copy, LoRA's adapters), optimizer
    states, backward (gradients and the backward's temporaries), forward (the language model's activations kept for
    backward, the loss's temporaries), the vision tower's forward (its activations), TRL's fused LM head (its
    log-prob tiles, forward or backward), generation (KV cache, expanded inputs), the batch, other."""
    parts = dict.fromkeys(PART_NAMES, 0)
    for path, size in run["memory"]["live_at_peak_by_phase"].items():
        names = path.split("/")
        label = next((n for n in reversed(names) if n in PARTS and n != "logps"), "")
        parts[PARTS.get(label, "other")] += size
    return parts


def _params(report: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return run.get("trainer", {}).get("params") or run.get("params") or report["models"].get(run["model"], {})


def _rows(run: dict[str, Any]) -> str:
    if run["stage"].startswith("rollouts"):
        return f"{run['engine_batch_size']} seq ({run['engine_batch_size'] // run['samples_per_prompt']} prompts)"
    if run["stage"] == "grpo":
        return f"{run['prompts_per_step']} x {run['num_generations']} seq"
    return f"{run['batch_size']} pairs"


def markdown_table(report: dict[str, Any]) -> str:
    """bench/RESULTS.md's tables, the bytes in MB (1e6): one row per cell with what it ran and its peak, then the
    bytes live at each peak by what allocated them (`peak_breakdown`)."""
    runs = [r for r in report["runs"] if r.get("profiled", True)]
    rss = {(r["model"], r["stage"]): r for r in report["runs"] if r.get("profiled", True) is False}
    head = (
        "| model | stage | params (trainable) | batch | prompt tok | completion tok | weights MB | at train start MB "
        "| peak MB | peak in | largest live at peak MB | RSS Δ MB (unprofiled) | s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for run in runs:
        if "error" in run:
            lines.append(f"| {run['model']} | {run['stage']} | error: {run['error'][-80:]!r} |" + " |" * 10)
            continue
        memory, params = run["memory"], _params(report, run)
        largest = memory["largest_live_at_peak"][0] if memory["largest_live_at_peak"] else None
        largest_text = f"{_mb(largest['bytes'])} ({' < '.join(largest['op'].split(' < ')[:2])})" if largest else "–"
        plain = rss.get((run["model"], run["stage"]), {}).get("rss_peak_delta_bytes")
        completion = run.get("completion_tokens") or run.get("chosen_tokens")
        lines.append(
            f"| {run['model']} | {run['stage']} | {params.get('total', 0) / 1e6:.2f}M "
            f"({params.get('trainable', params.get('total', 0)) / 1e6:.2f}M) | {_rows(run)} "
            f"| {_tokens(run.get('prompt_tokens'))} | {_tokens(completion)} "
            f"| {_mb(memory['weights_bytes'])} | {_mb(memory['live_at_train_start_bytes'])} "
            f"| **{_mb(memory['peak_bytes'])}** | {(memory['peak_phase'] or '').removeprefix('stage/')} "
            f"| {largest_text} | {_mb(run['rss_peak_delta_bytes'])} ({_mb(plain)}) | {run['wall_seconds']:g} |"
        )
    head = "| model | stage | peak MB | " + " | ".join(PART_NAMES) + " |"
    lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
    for run in runs:
        if "error" not in run:
            parts = peak_breakdown(run)
            lines.append(
                f"| {run['model']} | {run['stage']} | {_mb(run['memory']['peak_bytes'])} | "
                + " | ".join(_mb(parts[name]) for name in PART_NAMES)
                + " |"
            )
    return "\n".join(lines)


def _one(cell_json: str, result_path: Path) -> None:
    cell = Cell(**json.loads(cell_json))
    result_path.write_text(json.dumps(measure(cell), indent=1) + "\n")


def _run_cell(cell: Cell, timeout: float) -> dict[str, Any]:
    """`measure(cell)` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--one", json.dumps(dataclasses.asdict(cell)), "--result", str(out)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"model": cell.model, "stage": cell.stage, "error": f"timed out after {timeout:g} s"}
        if done.returncode != 0 or not out.is_file():
            return {"model": cell.model, "stage": cell.stage, "error": done.stderr[-3000:]}
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/memory_measure.json"))
    parser.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"of {', '.join(STAGES)}")
    parser.add_argument("--skip", default="", help="model:stage cells left out, comma-separated")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per cell")
    parser.add_argument("--check", action="store_true", help="run the method check only")
    parser.add_argument(
        "--rss-check", default="", help="model:stage cells to run once more without the profiler (all: every cell)"
    )
    parser.add_argument("--table", type=Path, help="print the markdown tables of this JSON report and stop")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.result)
        return
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    check = method_check()
    print(json.dumps({"method_check": check}), flush=True)
    if args.check:
        return
    from rollouts import SIZES, build_model  # the ~30M "small" size the rollout and DPO benches build

    started = time.monotonic()
    report: dict[str, Any] = {
        "method": "torch.profiler profile_memory=True from before the model load: peak of the summed allocator "
        "events; weights = live bytes when the first model load returns (see the module docstring)",
        "method_check": check,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "models": {},
        "runs": [],
    }
    import transformers
    import trl

    report["machine"] |= {"transformers": transformers.__version__, "trl": trl.__version__}
    skip = set(args.skip.split(",")) if args.skip else set()

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            model_dir = build_model(Path(tmp) / model, MODELS[model], bf16=False)
            report["models"][model] = {"spec": dataclasses.asdict(SIZES[MODELS[model]]), **model_facts(model_dir)}
            print(f"{model}: {report['models'][model]['total'] / 1e6:.2f}M parameters", flush=True)
            for stage in args.stages.split(","):
                if f"{model}:{stage}" in skip:
                    continue
                plain = args.rss_check == "all" or f"{model}:{stage}" in args.rss_check.split(",")
                for profiled in (True, False) if plain else (True,):
                    run = _run_cell(Cell(model, str(model_dir), stage, profiled=profiled), args.timeout)
                    report["runs"].append(run)
                    memory = run.get("memory", {})
                    print(
                        f"{model} {stage}{'' if profiled else ' (unprofiled)'}: peak {_mb(memory.get('peak_bytes'))} "
                        f"MB, weights {_mb(memory.get('weights_bytes'))} MB, RSS delta "
                        f"{_mb(run.get('rss_peak_delta_bytes'))} MB, {run.get('wall_seconds', '?')} s "
                        f"{run.get('error', '')[-300:]}",
                        flush=True,
                    )
                    write()
    report["total_seconds"] = round(time.monotonic() - started, 1)
    write()
    print(markdown_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
