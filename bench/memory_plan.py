"""The memory plan beside what it plans: predicted peaks (vlm_rl_assets/planning/) against the peaks
bench/memory_measure.py measured on CPU, for the same models and sizes; and the plan of the Qwen2-VL examples beside
the peers' published figures (docs/memory_plan.md).

    .venv/bin/python bench/memory_plan.py                      # the measured-vs-predicted table (bench/RESULTS.md)
    .venv/bin/python bench/memory_plan.py --peers              # the 2B / 7B / 72B plans beside LLaMA-Factory's table
    .venv/bin/python bench/memory_plan.py --gpu $OUT/gpu_device_memory.json   # against CUDA's peaks (bench/memory_device.py)

The plan is given each measured run's own sizes (prompt and answer tokens as measured, batch, settings), so the table
checks the memory terms, not the default size assumptions (resources.prompt_tokens, engine.max_new_tokens). The GPU
runs' DPO step runs each pair's two rows whole (no shared prompt, each row's image encoded), so its reference pass and
training step are predicted from the plan's terms for that layout rather than from its stages, which assume the
pipeline's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, uninstalled

from vlm_rl_assets.grpo.settings import GRPOSettings  # noqa: E402
from vlm_rl_assets.model.tiny_model import TinyVLMSpec, model_sizes  # noqa: E402
from vlm_rl_assets.planning.memory import (  # noqa: E402
    FORWARD,
    LOSS,
    GiB,
    TrainingSetup,
    forward_parts,
    lm_head,
    peak_bytes,
    training_parts,
    weights,
)
from vlm_rl_assets.planning.plan import Budget, PlanRequest, Stage, gib, plan_memory  # noqa: E402
from vlm_rl_assets.planning.shape import ModelShape, shape_of_config, shape_of_folder  # noqa: E402
from vlm_rl_assets.rollouts.settings import EngineSettings  # noqa: E402
from vlm_rl_assets.training.settings import LoRASettings, TrainingSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "bench" / "memory_measure.json"
STAGES = {  # measured cell -> the plan's stage
    "rollouts": "rollouts",
    "rollouts_n1": "rollouts",
    "dpo_reference": "reference log-probs",
    "dpo": "dpo training",
    "dpo_sft": "dpo training",
    "dpo_gc": "dpo training",
    "dpo_lora": "dpo training",
    "grpo": "grpo training",
}
TOLERANCE = 0.25
MB = 1e6


def measured_shape(facts: dict) -> ModelShape:
    spec = TinyVLMSpec(**{**facts["spec"], "mrope_section": tuple(facts["spec"]["mrope_section"])})
    processor = {"max_pixels": spec.max_pixels}
    config = {**model_sizes(spec, facts["vocab_size"]), "dtype": facts["dtype"]}
    return shape_of_config(config, processor, facts.get("name", "measured"))


def request_of(run: dict, shape: ModelShape) -> PlanRequest:
    """The plan's request with the measured run's own sizes."""
    prompt = run["prompt_tokens"]["mean"] - shape.image_tokens
    if "chosen_tokens" in run:  # DPO: the answers' mean length
        answer = (run["chosen_tokens"]["mean"] + run["rejected_tokens"]["mean"]) / 2
    else:
        answer = run.get("max_new_tokens") or run["max_completion_length"]
    lora = run.get("lora")
    training = TrainingSettings(
        batch_size=run.get("batch_size", 16),
        gradient_checkpointing=bool(run.get("gradient_checkpointing")),
        lora=LoRASettings(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"]) if lora else None,
    )
    grpo = GRPOSettings(
        **{k: run[k] for k in ("num_generations", "prompts_per_step", "max_completion_length", "beta") if k in run}
    )
    return PlanRequest(
        shape=shape,
        budget=Budget("cpu", 64 * GiB, 1),
        training=training,
        algorithm="grpo" if run["stage"] == "grpo" else "dpo",
        grpo=grpo,
        engine=EngineSettings(batch_size=run.get("engine_batch_size", 64), max_new_tokens=max(1, round(answer))),
        prompt_tokens=max(1, round(prompt)),
    )


def compare(report: dict) -> list[dict]:
    rows = []
    for run in report["runs"]:
        if run.get("profiled") is False or run["stage"] not in STAGES:
            continue
        shape = measured_shape(report["models"][run["model"]])
        stage = plan_stage(request_of(run, shape), STAGES[run["stage"]])
        rows.append(row(run, stage.name, stage.peak, run["memory"]["peak_bytes"]))
    return rows


def plan_stage(request: PlanRequest, name: str) -> Stage:
    return next(s for s in plan_memory(request).stages if s.name == name)


def row(run: dict, stage: str, predicted: int, measured: int | None) -> dict:
    """One line of the table; without a measured peak (a CPU smoke run, a step out of memory) no error."""
    return {
        "model": run["model"],
        "cell": run["stage"],
        "stage": stage,
        "measured": measured,
        "predicted": predicted,
        "error": predicted / measured - 1 if measured else None,
        "why": "out of memory" if "out_of_memory" in run else "not measured",
    }


def compare_gpu(report: dict) -> list[dict]:
    """bench/memory_device.py's runs (those skipped left out) beside the plan: rollouts against the plan's stage,
    the reference pass and DPO steps against the plan's terms for the device step's layout (`whole_rows`)."""
    rows = []
    for run in report["runs"]:
        if "stage" not in run or "skipped" in run:
            continue
        shape = measured_shape(report["models"][run["model"]])
        if run["stage"] == "rollouts":
            stage, predicted = "rollouts", plan_stage(request_of(run, shape), "rollouts").peak
        else:
            stage, predicted = whole_rows(run, shape)
        rows.append(row(run, stage, predicted, run.get("memory", {}).get("peak_bytes")))
    return rows


def whole_rows(run: dict, shape: ModelShape) -> tuple[str, int]:
    """The plan's reference-pass or training terms (vlm_rl_assets/planning/memory.py) for a batch of whole rows:
    every row runs its prompt and encodes its image, the LM head scores every row's answer."""
    rows, answer = run["rows"], (run["chosen_tokens"]["mean"] + run["rejected_tokens"]["mean"]) / 2
    tokens, scored = round(rows * (run["prompt_tokens"]["mean"] + answer)), round(rows * answer)
    if run["stage"] == "dpo_reference":
        parts = [weights(shape), *forward_parts(shape, tokens, rows, FORWARD), lm_head(scored, LOSS)]
        return "reference log-probs, rows whole", peak_bytes(parts)
    setup = TrainingSetup(
        tokens=tokens,
        logit_tokens=scored,
        images=rows,
        batch_images=rows,
        gradient_checkpointing=run["gradient_checkpointing"],
    )
    return "dpo training, rows whole", peak_bytes(training_parts(shape, setup))


def table(rows: list[dict]) -> str:
    lines = [
        "| model | measured cell | plan's stage | measured MB | predicted MB | predicted / measured - 1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        measured = "—" if r["measured"] is None else f"{r['measured'] / MB:,.1f}"
        if r["error"] is None:
            error = r["why"]
        else:
            error = f"{r['error']:+.0%}" + ("" if abs(r["error"]) <= TOLERANCE else " (outside ±25%)")
        lines.append(
            f"| {r['model']} | {r['cell']} | {r['stage']} | {measured} | {r['predicted'] / MB:,.1f} | {error} |"
        )
    return "\n".join(lines)


PEERS = {  # (model, method) -> the peers' published figure (docs/memory_plan.md)
    ("7B", "DPO full, pure bf16"): "LLaMA-Factory 7B full pure_bf16: 60GB",
    ("7B", "DPO full, bf16 mixed (sharded)"): "LLaMA-Factory 7B full bf16/fp16: 120GB",
    ("7B", "DPO LoRA r=16"): "LLaMA-Factory 7B LoRA: 16GB",
    ("72B", "DPO full, pure bf16"): "LLaMA-Factory 70B full pure_bf16: 600GB",
    ("72B", "DPO full, bf16 mixed (sharded)"): "LLaMA-Factory 70B full bf16/fp16: 1200GB",
    ("72B", "DPO LoRA r=16"): "LLaMA-Factory 70B LoRA: 160GB",
    ("7B", "GRPO full"): "verl Qwen2-7B GRPO: 2*H800 (MIN)",
    ("7B", "GRPO LoRA r=16"): "verl Qwen2.5-7B GRPO-LoRA: 1*H100 (MIN)",
    ("72B", "GRPO LoRA r=16"): "verl Qwen2.5-72B GRPO-LoRA: 8*H100, weights and optimizer offloaded (MIN)",
}
METHODS = {
    "DPO full, pure bf16": ("dpo", {}),
    "DPO full, bf16 mixed (sharded)": ("dpo", {"sharding": "fsdp2"}),
    "DPO LoRA r=16": ("dpo", {"lora": LoRASettings()}),
    "GRPO full": ("grpo", {}),
    "GRPO LoRA r=16": ("grpo", {"lora": LoRASettings()}),
}


def peers() -> str:
    """Qwen2-VL 2B/7B/72B on one card large enough for it (sharded runs: the whole over all cards), gradient
    checkpointing on: DPO on one pair of 512 text + 256 image tokens with 256-token answers; GRPO (verl's 72B
    script's sizes) one prompt of 512 + 256 tokens, 8 completions of 1024 tokens, its KL reference held."""
    lines = [
        "| model | method | weights + gradients + optimizer (+ reference) | whole peak | peers' figure |",
        "|---|---|---|---|---|",
    ]
    for size in ("2B", "7B", "72B"):
        shape = shape_of_folder(ROOT / "examples" / "models" / f"Qwen2-VL-{size}-Instruct")
        for method, (algorithm, update) in METHODS.items():
            training = TrainingSettings(batch_size=1, gradient_checkpointing=True, **update)
            request = PlanRequest(
                shape=shape,
                budget=Budget("cuda", 4096 * GiB, 1),
                training=training,
                algorithm=algorithm,
                grpo=GRPOSettings(prompts_per_step=1, num_generations=8, max_completion_length=1024),
                engine=EngineSettings(max_new_tokens=256),
                prompt_tokens=512,
            )
            stage = next(s for s in plan_memory(request).stages if s.name == f"{algorithm} training")
            states = sum(p.bytes for p in stage.parts if p.name in ("weights", "gradients", "optimizer", "reference"))
            figure = PEERS.get((size, method), "")
            lines.append(f"| Qwen2-VL-{size} | {method} | {gib(states)} | {gib(stage.peak)} | {figure} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measured", default=str(MEASURED))
    parser.add_argument("--peers", action="store_true", help="the Qwen2-VL examples' plans for docs/memory_plan.md")
    parser.add_argument("--gpu", type=Path, help="bench/gpu_device.py --leg memory's gpu_device_memory.json")
    args = parser.parse_args()
    if args.peers:
        print(peers())
        return
    if args.gpu:
        report = json.loads(args.gpu.read_text())
        print(f"{report['machine']['gpu'] or 'no GPU (a CPU smoke run)'}: peak torch.cuda.max_memory_allocated\n")
        rows = compare_gpu(report)
    else:
        rows = compare(json.loads(Path(args.measured).read_text()))
    print(table(rows))
    measured = [r for r in rows if r["error"] is not None]
    inside = sum(abs(r["error"]) <= TOLERANCE for r in measured)
    print(f"\n{inside} of {len(measured)} measured within ±{TOLERANCE:.0%}")


if __name__ == "__main__":
    main()
