"""The memory plan beside what it plans: predicted peaks (vlm_rl_assets/planning/) against the peaks
bench/memory_measure.py measured on CPU, for the same models and sizes; and the plan of the Qwen2-VL examples beside
the peers' published figures (docs/memory_plan.md).

    .venv/bin/python bench/memory_plan.py                      # the measured-vs-predicted table (bench/RESULTS.md)
    .venv/bin/python bench/memory_plan.py --peers              # the 2B / 7B / 72B plans beside LLaMA-Factory's table

The plan is given each measured run's own sizes (prompt and answer tokens as measured, batch, settings), so the table
checks the memory terms, not the default size assumptions (resources.prompt_tokens, engine.max_new_tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, uninstalled

from vlm_rl_assets.grpo.settings import GRPOSettings  # noqa: E402
from vlm_rl_assets.model.tiny_model import TinyVLMSpec, model_sizes  # noqa: E402
from vlm_rl_assets.planning.memory import GiB  # noqa: E402
from vlm_rl_assets.planning.plan import Budget, PlanRequest, gib, plan_memory  # noqa: E402
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
    return shape_of_config(model_sizes(spec, facts["vocab_size"]), processor, facts.get("name", "measured"))


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
        plan = plan_memory(request_of(run, shape))
        stage = next(s for s in plan.stages if s.name == STAGES[run["stage"]])
        measured = run["memory"]["peak_bytes"]
        rows.append(
            {
                "model": run["model"],
                "cell": run["stage"],
                "stage": stage.name,
                "measured": measured,
                "predicted": stage.peak,
                "error": stage.peak / measured - 1,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | measured cell | plan's stage | measured MB | predicted MB | predicted / measured - 1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        flag = "" if abs(r["error"]) <= TOLERANCE else " (outside ±25%)"
        lines.append(
            f"| {r['model']} | {r['cell']} | {r['stage']} | {r['measured'] / MB:,.1f} | {r['predicted'] / MB:,.1f} | "
            f"{r['error']:+.0%}{flag} |"
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
    args = parser.parse_args()
    if args.peers:
        print(peers())
        return
    rows = compare(json.loads(Path(args.measured).read_text()))
    print(table(rows))
    inside = sum(abs(r["error"]) <= TOLERANCE for r in rows)
    print(f"\n{inside} of {len(rows)} within ±{TOLERANCE:.0%}")


if __name__ == "__main__":
    main()
