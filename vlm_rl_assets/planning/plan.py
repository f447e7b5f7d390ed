"""The memory plan: every stage's peak per GPU (or on the CPU) for the configured model, settings and machines, whether
it fits, and for a stage that does not, the cheapest change that makes it fit, with the numbers. `python -m
vlm_rl_assets plan` prints it, `base_model` records it, and a config whose plan does not fit is refused at load.

Changes are tried cheapest first: those that leave the trained model as it is (gradient checkpointing, sharding over
the cards `resources` gives), then LoRA, then a smaller batch, then fewer image pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.planning.memory import (
    FORWARD,
    LOSS,
    SAMPLING,
    GiB,
    Part,
    TrainingSetup,
    forward_parts,
    generation_parts,
    kv_cache,
    lm_head,
    peak_bytes,
    pixel_values,
    training_parts,
    weights,
)
from vlm_rl_assets.planning.settings import ResourcesSettings
from vlm_rl_assets.planning.shape import ModelShape
from vlm_rl_assets.readable import mebibytes
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.training.settings import LoRASettings, TrainingSettings

CUDA_RESERVED = 1 * GiB  # the CUDA context, cuBLAS workspaces, NCCL buffers: not the allocator's
CPU_SHARE = 0.8  # of the host's RAM: the OS, Dagster and the store take the rest
MIN_IMAGE_TOKENS = 4


@dataclass(frozen=True)
class Budget:
    """What one process may take: a GPU's memory less what CUDA keeps, or a share of the host's RAM."""

    device: str
    device_bytes: int
    cards: int  # GPUs a training step may use

    @property
    def usable(self) -> int:
        if self.device.startswith("cuda"):
            return self.device_bytes - CUDA_RESERVED
        return int(self.device_bytes * CPU_SHARE)

    def describe(self) -> str:
        if self.device.startswith("cuda"):
            return f"{self.cards} x {gib(self.device_bytes)} GPU"
        return f"{gib(self.device_bytes)} of RAM (CPU)"


@dataclass(frozen=True)
class Stage:
    name: str
    runs: str  # the assets that run it
    parts: tuple[Part, ...]
    usable: int
    per: str  # "per GPU", "on the CPU"

    @property
    def peak(self) -> int:
        return peak_bytes(self.parts)

    @property
    def fits(self) -> bool:
        return self.peak <= self.usable


@dataclass(frozen=True)
class Suggestion:
    change: str  # the settings to set, as YAML paths
    peak: int


@dataclass(frozen=True)
class PlanRequest:
    """Everything the plan reads: the model's shape, the machines, and the settings of each stage."""

    shape: ModelShape
    budget: Budget
    training: TrainingSettings
    algorithm: str  # dpo | grpo
    grpo: GRPOSettings
    engine: EngineSettings
    prompt_tokens: int  # text tokens of a prompt besides its images


@dataclass(frozen=True)
class MemoryPlan:
    request: PlanRequest
    stages: tuple[Stage, ...]
    suggestions: dict[str, list[Suggestion]] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return all(stage.fits for stage in self.stages)

    def check(self) -> None:
        """Raise MemoryPlanError with `refusal()` unless every stage fits."""
        if not self.fits:
            raise MemoryPlanError(self.refusal())

    def refusal(self) -> str:
        """Why the config cannot run and what would make it, for the error at load."""
        lines = [f"{self.request.shape.name} does not fit {self.request.budget.describe()}:"]
        for stage in self.stages:
            if not stage.fits:
                lines.append(f"  {stage.name} needs {gib(stage.peak)} {stage.per}, {gib(stage.usable)} usable")
                lines += [
                    f"    {p.name}: {gib(p.bytes)} ({p.note}{', when ' + p.phase if p.phase else ''})"
                    for p in stage.parts
                    if p.bytes
                ]
                found = self.suggestions.get(stage.name) or []
                lines += [f"  cheapest change that fits: {found[0].change} -> {gib(found[0].peak)}"] if found else []
                lines += [f"  also fits: {s.change} -> {gib(s.peak)}" for s in found[1:3]]
                lines += [] if found else ["  no single change found fits: more or larger GPUs (resources:)"]
        return "\n".join(lines)


class MemoryPlanError(ValueError):
    """A config whose plan does not fit: refused before any model is loaded; the message holds the numbers and the
    cheapest change that fits."""


def gib(value: int) -> str:
    """`820 MiB`, `23.5 GiB`, `4.21 TiB`."""
    return f"{value / 2**40:.3g} TiB" if value >= 2**40 else mebibytes(value / 2**20)


UNKNOWN_CARD = (
    "model.device is cuda but no GPU is visible here to size the plan: set resources.gpu_memory_gib (e.g. 80 for an "
    "H100 80GB)"
)


def budget_of(resources: ResourcesSettings, device: str) -> Budget | None:
    """The card size `resources` gives, else the visible card's (cuda; None where none is visible: UNKNOWN_CARD) or
    this host's RAM (cpu)."""
    if resources.gpu_memory_gib is not None:
        return Budget(device, int(resources.gpu_memory_gib * GiB), resources.cards)
    if device.startswith("cuda"):
        import torch  # only a cuda config without gpu_memory_gib pays for it

        if not torch.cuda.is_available():
            return None
        return Budget(device, torch.cuda.get_device_properties(0).total_memory, resources.cards)
    return Budget(device, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), 1)


def plan_memory(request: PlanRequest) -> MemoryPlan:
    stages = tuple(_stages(request))
    suggestions = {s.name: _suggestions(request, s.name) for s in stages if not s.fits}
    return MemoryPlan(request, stages, suggestions)


def _stages(request: PlanRequest) -> Iterator[Stage]:
    yield _stage(request, "rollouts", "rollouts, benchmark_scores", _rollout_parts(request), _engine_share(request))
    if request.algorithm == "dpo":
        yield _stage(request, "reference log-probs", "dpo_checkpoint (before training)", _reference_parts(request))
        yield _stage(request, "dpo training", "dpo_checkpoint, policy_checkpoint", _dpo_parts(request))
    else:
        yield _stage(request, "grpo training", "grpo_checkpoint, policy_checkpoint", _grpo_parts(request))


def _stage(request: PlanRequest, name: str, runs: str, parts: list[Part], usable: int | None = None) -> Stage:
    per = "per GPU" if request.budget.device.startswith("cuda") else "on the CPU"
    return Stage(name, runs, tuple(parts), min(request.budget.usable, usable or request.budget.usable), per)


def _engine_share(r: PlanRequest) -> int | None:
    """vLLM refuses to start beyond gpu_memory_utilization of the card: its weights and one sequence must fit in it."""
    if r.engine.kind != "vllm" or r.engine.vllm_kv_cache_gib is not None:
        return None
    return int(r.engine.gpu_memory_utilization * r.budget.device_bytes)


def _prompt(r: PlanRequest) -> int:
    return r.prompt_tokens + r.shape.image_tokens


def _rollout_parts(r: PlanRequest) -> list[Part]:
    """One generate call of engine.batch_size sequences (hf), or vLLM's share of the card."""
    e, shape = r.engine, r.shape
    if e.kind == "vllm":
        return _vllm_parts(r)
    held = [weights(shape), pixel_values(shape, e.batch_size, "one per sequence of the call")]
    return held + generation_parts(shape, e.batch_size, _prompt(r), e.max_new_tokens)


def _vllm_parts(r: PlanRequest) -> list[Part]:
    """vLLM takes gpu_memory_utilization of the card (weights, its profiling run's activations, the rest KV cache)
    unless the KV cache is sized (vllm_kv_cache_gib); it needs room for at least one whole sequence."""
    e, shape = r.engine, r.shape
    shards = e.tensor_parallel_size
    chunk = max(_prompt(r), 2048)  # its profiling run: a full chunk of tokens and the largest image
    held = [weights(shape, shards), *(replace(p, phase="") for p in forward_parts(shape, chunk // shards, 1, FORWARD))]
    if e.vllm_kv_cache_gib is not None:
        return [*held, Part("KV cache", int(e.vllm_kv_cache_gib * GiB), "vllm_kv_cache_gib")]
    share = int(e.gpu_memory_utilization * r.budget.device_bytes)
    one = replace(kv_cache(shape, 1, _prompt(r) + e.max_new_tokens, ""), name="KV cache, one sequence")
    rest = share - peak_bytes(held) - one.bytes
    note = f"the rest of gpu_memory_utilization {e.gpu_memory_utilization}"
    return [*held, one] + ([Part("KV cache, more sequences", rest, note)] if rest > 0 else [])


def _reference_parts(r: PlanRequest) -> list[Part]:
    """The base model's log-probs of every pair, one no-grad pass before training (cached: training loads no
    reference model); on GPUs its layers spread over the step's cards (accelerate's device_map)."""
    pairs, answer = r.training.batch_size, r.engine.max_new_tokens
    spread = r.budget.cards if r.budget.device.startswith("cuda") else 1
    tokens = pairs * (_prompt(r) + 2 * answer)
    return [
        weights(r.shape, spread),
        *forward_parts(r.shape, tokens, pairs, FORWARD),
        lm_head(2 * pairs * answer, LOSS),
    ]


def _dpo_parts(r: PlanRequest) -> list[Part]:
    """A pair's prompt runs once (dpo/shared_prefix.py) and its image is encoded once (pair_dpo.py); the batch holds
    both rows' pixels; the loss scores only the answers (score_completions_only)."""
    t = r.training
    pairs, answer = t.batch_size // t.num_processes, r.engine.max_new_tokens
    tokens = pairs * (_prompt(r) + 2 * answer)
    return training_parts(r.shape, _setup(t, tokens, 2 * pairs * answer, images=pairs, batch_images=4 * pairs))


def _grpo_parts(r: PlanRequest) -> list[Part]:
    """Each step samples its completions with the policy being trained (its weights and optimizer held), then trains
    on every prompt and completion position; with beta > 0 TRL holds a reference copy (LoRA: adapters off)."""
    rows, completion = r.grpo.prompts_per_step * r.grpo.num_generations, r.grpo.max_completion_length
    tokens = rows * (_prompt(r) + completion)
    setup = _setup(r.training, tokens, tokens, images=rows, batch_images=rows)
    parts = training_parts(r.shape, setup)
    if r.grpo.beta > 0 and r.training.lora is None:
        parts.insert(1, weights(r.shape, setup.shards, "reference"))
    return parts + generation_parts(r.shape, rows, _prompt(r), completion, SAMPLING)


def _setup(t: TrainingSettings, tokens: int, logit_tokens: int, images: int, batch_images: int) -> TrainingSetup:
    return TrainingSetup(
        tokens=tokens,
        logit_tokens=logit_tokens,
        images=images,
        batch_images=batch_images,
        lora_rank=t.lora.r if t.lora else None,
        lora_targets=t.lora.target_modules if t.lora else "all-linear",
        freeze_vision=t.freeze_vision_tower,
        gradient_checkpointing=t.gradient_checkpointing,
        sharding=t.sharding,
        processes=t.num_processes,
    )


Change = tuple[str, Callable[[PlanRequest], PlanRequest]]  # the settings it sets, and the request with them


def _suggestions(request: PlanRequest, stage: str) -> list[Suggestion]:
    """The single changes, cheapest first, that make `stage` fit; where none does alone, the cheapest changes
    combined in that order (each move's weakest alternative that fits, else its strongest) until it fits."""
    moves = _moves(request, stage)
    single = [
        Suggestion(label, peak)
        for move in moves
        for label, change in move
        if (peak := _peak(change(request), stage)) <= request.budget.usable
    ]
    if single:
        return single
    labels, current = [], request
    for move in moves:
        tried = [(label, change(current)) for label, change in move]
        fitting = [(label, changed) for label, changed in tried if _peak(changed, stage) <= request.budget.usable]
        label, changed = (fitting or tried[-1:] or [("", current)])[0]
        if label and _peak(changed, stage) < _peak(current, stage):
            labels.append(label)
            current = changed
        if fitting:
            return [Suggestion(" + ".join(labels), _peak(current, stage))]
    return []


def _peak(request: PlanRequest, stage: str) -> int:
    return next(s for s in _stages(request) if s.name == stage).peak


def _moves(r: PlanRequest, stage: str) -> list[list[Change]]:
    """Each kind of change with its alternatives, weakest first; kinds cheapest first: those that leave the trained
    model as it is, then LoRA, then a smaller batch, then fewer pixels."""

    def train(label: str, **update: object) -> Change:
        return label, lambda req: replace(req, training=req.training.model_copy(update=update))

    def engine(batch: int) -> Change:
        return f"engine.batch_size: {batch}", lambda req: replace(
            req, engine=req.engine.model_copy(update={"batch_size": batch})
        )

    budget = r.shape.images.max_pixels or 0  # none where the count follows no pixel budget (Gemma 3's is fixed)
    pixels = [_pixels(r, p) for p in _halvings_above(budget, MIN_IMAGE_TOKENS * _pixels_per_token(r))]
    if stage == "rollouts":
        return [[engine(b) for b in _halvings(r.engine.batch_size, 1)], pixels]
    t = r.training
    return [
        [train("training.gradient_checkpointing: true", gradient_checkpointing=True)]
        if not t.gradient_checkpointing
        else [],
        [
            train(f"training.sharding: fsdp2 over {n} GPUs (num_processes: {n})", sharding="fsdp2", num_processes=n)
            for n in _shard_counts(r)
        ],
        [train("training.lora: {r: 16}", lora=LoRASettings())] if t.lora is None else [],
        [train(f"training.batch_size: {b}", batch_size=b) for b in _halvings(t.batch_size, t.num_processes)],
        pixels,
    ]


def _pixels_per_token(r: PlanRequest) -> int:
    return (r.shape.vision.patch * r.shape.vision.merge) ** 2


def _pixels(r: PlanRequest, pixels: int) -> Change:
    label = f"max_pixels: {pixels} in the model folder's preprocessor config ({pixels // _pixels_per_token(r)} image tokens)"
    return label, lambda req: replace(req, shape=req.shape.with_max_pixels(pixels))


def _halvings_above(value: int, floor: int) -> Iterator[int]:
    while value // 2 >= floor:
        value //= 2
        yield value


def _shard_counts(r: PlanRequest) -> list[int]:
    """Processes to shard over on GPUs: 2 up to the cards a step may use, where the batch splits over them (GRPO
    trains in one process)."""
    if not r.budget.device.startswith("cuda") or r.algorithm == "grpo":
        return []
    return [n for n in range(2, r.budget.cards + 1) if r.training.batch_size % n == 0]


def _halvings(value: int, floor: int) -> Iterator[int]:
    while value // 2 >= floor and (value // 2) % floor == 0:
        value //= 2
        yield value
