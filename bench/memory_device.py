"""The memory leg of bench/gpu_device.py: torch.cuda.max_memory_allocated of a random-init ~0.5B and ~2B Qwen2-VL in
bfloat16 in the stages the memory plan sizes, with every size the plan needs, for `bench/memory_plan.py --gpu`.

    python bench/gpu_device.py --leg memory --out $OUT --max-seconds 240      # the GPU: gpu_device_memory.json, ~2-3 min
    python bench/gpu_device.py --leg memory --device cpu --tiny --out /tmp/smoke   # CPU: the same path, no figures
    .venv/bin/python bench/memory_plan.py --gpu $OUT/gpu_device_memory.json   # predicted vs measured

Per model: rollouts (the hf engine: 8 prompts x 8 samples in one call of 64 sequences, 40 new tokens, one image at
the spec's max pixels each); the reference log-probs of 16 pairs (no grad); DPO steps on them with and without
gradient checkpointing. The DPO step is plain torch (the device machine has no TRL): full fine-tuning in pure
bfloat16 with fused AdamW, as the pipeline trains unsharded; the chosen and rejected rows run as 2 x 16 whole
sequences (the pipeline's once-run shared prompt and once-encoded image are not reproduced, so bench/memory_plan.py
predicts this layout); the LM head scores only the answer tokens, in TRL's tiles (`ChunkedLogProbs`). Figures are
bytes above what was allocated before the model loaded; each step's peak is kept (the first allocates AdamW's states).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image
from sharded_dpo import dpo_loss, pair_batch

from vlm_rl_assets.model.loading import load_model, load_processor, release_memory
from vlm_rl_assets.model.tiny_model import TinyVLMSpec
from vlm_rl_assets.planning.shape import shape_of_folder
from vlm_rl_assets.rollouts.engine import GenerationRequest, HFEngine, SamplingParams

# Qwen2-VL-2B's text and vision shape (examples/models/Qwen2-VL-2B-Instruct/config.json) with the small trained
# vocabulary; its images at 224 x 224 as HALF_B's, so that a DPO step without checkpointing fits an 80 GB card.
TWO_B = TinyVLMSpec(
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    mrope_section=(16, 24, 24),  # sums to head_dim / 2 = 64
    vision_depth=32,
    vision_embed_dim=1280,
    vision_num_heads=16,
    max_pixels=224 * 224,
)
PROMPTS, SAMPLES, MAX_NEW_TOKENS = 8, 8, 40  # the pipeline's sampling: one engine call of 64 sequences
PAIRS, ANSWER_TOKENS, STEPS = 16, 40, 3
MEMORY_WORKLOAD = (
    f"each model in bfloat16: rollouts of {PROMPTS} prompts x {SAMPLES} samples in one call, {MAX_NEW_TOKENS} new "
    f"tokens; the reference pass and {STEPS} DPO steps (full, pure bf16, fused AdamW) of {PAIRS} pairs of "
    f"{ANSWER_TOKENS}-token random answers, with and without gradient checkpointing; one image each at max pixels"
)
QUESTION = "What colour is the shape?"
IMAGE_TOKEN = "<|image_pad|>"
# TRL 1.16's chunked log-prob (trl/kernels/chunked_logprob.py): TOKEN_CHUNK_SIZE, and the vocabulary columns the
# DPO trainer passes (_CHUNKED_LOGPROB_CHUNK_SIZE in trl/trainer/utils.py).
TILE_TOKENS, TILE_COLUMNS = 4096, 32768

LATE = "past --max-seconds"
Record = Callable[[dict], None]


class ChunkedLogProbs(torch.autograd.Function):
    """Each token's log-prob of its target under `hidden @ weight.T`, in float32 tiles of at most TILE_TOKENS x
    TILE_COLUMNS: the forward keeps only a running log-sum-exp, the backward recomputes each tile and turns it into
    the logits' gradient in place, accumulating the input gradients in float32, as TRL's does; so one tile is the
    only logits ever held, which is what the plan's LM-head term counts."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_z = hidden.new_full((len(hidden),), -math.inf, dtype=torch.float32)
        target_logit = torch.zeros_like(log_z)
        for rows, first, tile in _tiles(hidden, weight):
            log_z[rows] = torch.logaddexp(log_z[rows], tile.logsumexp(-1))
            hit, column = _targets_in(targets[rows], first, tile.shape[1])
            target_logit[rows][hit] += tile[hit, column]
        ctx.save_for_backward(hidden, weight, targets, log_z)
        return target_logit - log_z

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        hidden, weight, targets, log_z = ctx.saved_tensors
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for rows, first, tile in _tiles(hidden, weight):
            g = grad[rows].float()
            tile.sub_(log_z[rows, None]).exp_().mul_(-g[:, None])  # d log p(target) / d logit j = 1[j = target] - p_j
            hit, column = _targets_in(targets[rows], first, tile.shape[1])
            tile.index_put_((hit, column), g[hit], accumulate=True)
            columns = slice(first, first + tile.shape[1])
            grad_hidden[rows] += tile @ weight[columns].float()
            grad_weight[columns] += tile.T @ hidden[rows].float()
        return grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype), None


def _tiles(hidden: torch.Tensor, weight: torch.Tensor) -> Iterator[tuple[slice, int, torch.Tensor]]:
    """(its tokens, its first column, the float32 logits tile) of every tile, each a view of one buffer of
    TILE_TOKENS x TILE_COLUMNS whatever the vocabulary, as TRL allocates its `mm_buf`."""
    buffer = torch.empty(min(len(hidden), TILE_TOKENS), TILE_COLUMNS, dtype=torch.float32, device=hidden.device)
    for start in range(0, len(hidden), TILE_TOKENS):
        rows = slice(start, start + TILE_TOKENS)
        for first in range(0, len(weight), TILE_COLUMNS):
            columns = weight[first : first + TILE_COLUMNS]
            tile = buffer[: len(hidden[rows]), : len(columns)]
            torch.mm(hidden[rows].float(), columns.float().T, out=tile)
            yield rows, first, tile


def _targets_in(targets: torch.Tensor, first: int, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tile's rows whose target lies in its columns, and that column."""
    local = targets - first
    hit = ((local >= 0) & (local < columns)).nonzero().squeeze(1)
    return hit, local[hit]


def answer_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's summed log-prob of its answer: the backbone's hidden states at the answer positions only through
    the LM head, as TRL's fused head does; no KV cache (TRL passes use_cache=False)."""
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    hidden = model.model(**inputs, use_cache=False).last_hidden_state[:, :-1]
    mask = batch["completion_mask"][:, 1:].bool()
    head = model.get_output_embeddings().weight
    logps = ChunkedLogProbs.apply(hidden[mask], head, batch["input_ids"][:, 1:][mask])
    return logps.new_zeros(len(mask)).index_add(0, mask.nonzero()[:, 0], logps)


def image_token_id(processor: object) -> int:
    return processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": round(statistics.fmean(values), 1), "max": max(values)}


def prompt_sizes(prompt_lengths: list[int], image_tokens: list[int]) -> dict:
    """The prompt's tokens in the form bench/memory_plan.py reads: all of them, its text's and its images'."""
    return {
        "prompt_tokens": stats(prompt_lengths),
        "prompt_text_tokens": stats([n - i for n, i in zip(prompt_lengths, image_tokens)]),
        "image_tokens": stats(image_tokens),
    }


class Allocated:
    """CUDA's allocated bytes above those held when made (None off CUDA, where its counters do not exist)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.base = torch.cuda.memory_allocated() if self.cuda else 0

    def now(self) -> int | None:
        return torch.cuda.memory_allocated() - self.base if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int | None:
        if not self.cuda:
            return None
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - self.base


def rollouts(model_dir: Path, device: str, side: int) -> dict:
    """One engine call of PROMPTS x SAMPLES sequences, after a small warm-up call (kernels, allocator)."""
    memory = Allocated(device)
    requests = [
        GenerationRequest(QUESTION, (Image.new("RGB", (side, side), (30 * i, 255 - 30 * i, 128)),))
        for i in range(PROMPTS)
    ]
    with HFEngine(model_dir, device=device, batch_size=PROMPTS * SAMPLES) as engine:
        weights = memory.now()
        engine.generate(requests[:1], SamplingParams(n=2, max_new_tokens=2))
        memory.reset_peak()
        start = time.perf_counter()
        groups = engine.generate(requests, SamplingParams(n=SAMPLES, max_new_tokens=MAX_NEW_TOKENS, seed=0))
        peak, seconds = memory.peak(), time.perf_counter() - start
        prompts = engine.prompt_token_ids(requests)
        image = image_token_id(engine.processor)
    return {
        "prompts": PROMPTS,
        "samples_per_prompt": SAMPLES,
        "engine_batch_size": PROMPTS * SAMPLES,
        "max_new_tokens": MAX_NEW_TOKENS,
        **prompt_sizes([len(p) for p in prompts], [p.count(image) for p in prompts]),
        "completion_tokens": stats([c.n_tokens for group in groups for c in group]),
        "seconds": round(seconds, 2),
        "memory": {"weights_bytes": weights, "peak_bytes": peak},
    }


def pair_sizes(batch: dict[str, torch.Tensor], image: int) -> dict:
    """The DPO batch's sizes: pairs, rows, prompt and answer tokens (chosen and rejected rows alike)."""
    answers = batch["completion_mask"].sum(1).long()
    prompts = batch["attention_mask"].sum(1) - answers
    rows = len(answers)
    return {
        "batch_size": rows // 2,
        "rows": rows,
        "layout": "chosen and rejected rows whole: each runs its prompt and encodes its image",
        **prompt_sizes(prompts.tolist(), (batch["input_ids"] == image).sum(1).tolist()),
        "chosen_tokens": stats(answers[: rows // 2].tolist()),
        "rejected_tokens": stats(answers[rows // 2 :].tolist()),
    }


def reference_pass(model_dir: Path, device: str, batch: dict[str, torch.Tensor]) -> dict:
    """The base model's log-probs of every row in one no-grad pass, as the pipeline caches them before training."""
    memory = Allocated(device)
    model = load_model(model_dir, device)
    weights = memory.now()
    memory.reset_peak()
    with torch.no_grad():
        answer_logps(model, batch)
    return {"memory": {"weights_bytes": weights, "peak_bytes": memory.peak()}}


def dpo_steps(model_dir: Path, device: str, batch: dict[str, torch.Tensor], checkpointing: bool) -> dict:
    """STEPS sigmoid DPO steps of full pure-bf16 fine-tuning with fused AdamW (the reference log-probs computed
    first, unmeasured), each step's peak."""
    memory = Allocated(device)
    model = load_model(model_dir, device)
    weights = memory.now()
    with torch.no_grad():
        reference = answer_logps(model, batch)
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=memory.cuda)
    peaks, losses = [], []
    for _ in range(STEPS):
        memory.reset_peak()
        loss = dpo_loss(answer_logps(model, batch), reference)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # the Trainer's default
        peaks.append(memory.peak())
        losses.append(round(loss.item(), 4))
    peak = max(peaks) if memory.cuda else None
    return {
        "gradient_checkpointing": checkpointing,
        "steps": STEPS,
        "optimizer": f"torch.optim.AdamW(fused={memory.cuda}), states in {next(model.parameters()).dtype}",
        "losses": losses,
        "memory": {"weights_bytes": weights, "peak_bytes": peak, "step_peak_bytes": peaks},
    }


def image_side(spec: TinyVLMSpec) -> int:
    """The square image of the spec's max pixels: the most image tokens it takes."""
    return math.isqrt(spec.max_pixels)


def model_facts(spec: TinyVLMSpec, model_dir: Path) -> dict:
    """What bench/memory_plan.py rebuilds the model's shape from (the spec, vocabulary and dtype), and the counts
    from the saved weights."""
    shape = shape_of_folder(model_dir)
    return {
        "spec": dataclasses.asdict(spec),
        "vocab_size": shape.text.vocab,
        "dtype": shape.dtype,
        "parameters": shape.parameters,
        "vision_parameters": shape.vision_parameters,
        "image_side_px": image_side(spec),
    }


def measured(run: Callable[[], dict]) -> dict:
    """The run's figures, or that it ran out of the card's memory (the plan may say so too); its memory freed."""
    try:
        return run()
    except torch.OutOfMemoryError as error:
        return {"out_of_memory": str(error).split("\n")[0]}
    finally:
        release_memory()


def stages(model_dir: Path, spec: TinyVLMSpec, device: str) -> dict[str, Callable[[], dict]]:
    """Each stage's measurement of the model, with its sizes."""
    side = image_side(spec)
    batch = {k: v.to(device) for k, v in pair_batch(model_dir, PAIRS, ANSWER_TOKENS, seed=0, side=side).items()}
    pairs = pair_sizes(batch, image_token_id(load_processor(model_dir)))
    return {
        "rollouts": lambda: rollouts(model_dir, device, side),
        "dpo_reference": lambda: pairs | reference_pass(model_dir, device, batch),
        "dpo": lambda: pairs | dpo_steps(model_dir, device, batch, checkpointing=False),
        "dpo_gc": lambda: pairs | dpo_steps(model_dir, device, batch, checkpointing=True),
    }


def memory_leg(
    specs: dict[str, TinyVLMSpec],
    build: Callable[[Path, TinyVLMSpec], object],
    device: str,
    work: Path,
    deadline: float,
    report: dict,
    record: Record,
) -> None:
    """Every stage of each model in turn, each recorded as it ends; those left once `deadline` (monotonic) has
    passed are recorded as skipped."""
    report["models"] = {}
    for name, spec in specs.items():
        if time.monotonic() > deadline:
            record({"model": name, "skipped": LATE})
            continue
        start = time.perf_counter()
        build(work / name, spec)
        report["models"][name] = model_facts(spec, work / name) | {
            "build_seconds": round(time.perf_counter() - start, 1)
        }
        for stage, run in stages(work / name, spec, device).items():
            late = time.monotonic() > deadline
            record({"model": name, "stage": stage} | ({"skipped": LATE} if late else measured(run)))
        shutil.rmtree(work / name)
