"""The fsdp2 leg of bench/gpu_device.py: DPO steps under accelerate's FSDP2 plugin on one GPU, launched on the very
accelerate config file a sharded pipeline run launches with (vlm_rl_assets/training/sharding.py), against the same
steps unsharded; each run's gathered save (vlm_rl_assets/model/gathered.py) is reloaded unsharded and must give the
loss the run ended on.

    python bench/gpu_device.py --leg fsdp2 --out $OUT                      # on the GPU: the ~0.5B model
    python bench/gpu_device.py --leg fsdp2 --device cpu --tiny --out /tmp/smoke   # CPU: the unsharded run only

The loss is sigmoid DPO written in plain torch (the device machine has no TRL) on random answer tokens after one
image prompt per pair, the reference log-probs computed before training as the pipeline caches them. Each run is a
process of its own (the sharded one under `accelerate launch --config_file`), writing its figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, uninstalled

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from vlm_rl_assets.model.chat import user_message  # noqa: E402
from vlm_rl_assets.model.gathered import save_gathered  # noqa: E402
from vlm_rl_assets.model.loading import checkpoint_dtype, load_model, load_processor  # noqa: E402
from vlm_rl_assets.training import sharding  # noqa: E402

BETA = 0.1
RELOAD_TOLERANCE = 1e-2  # |reloaded - final| loss: bf16 weights either way, only summation order may differ
AGREEMENT_TOLERANCE = 5e-2  # per-step |sharded - unsharded| loss: FSDP2 casts every weight, autocast only matmuls


def pair_batch(model_dir: Path, pairs: int, answer_tokens: int, seed: int, side: int = 112) -> dict[str, torch.Tensor]:
    """`pairs` image prompts (images of `side` pixels square, so equal lengths: no padding), then random answer
    tokens: rows are [chosen rows, rejected rows], as TRL lays them out; `completion_mask` marks the answers."""
    rng = random.Random(seed)
    processor = load_processor(model_dir)
    prompt = processor.apply_chat_template([user_message("What colour is the shape?", 1)], add_generation_prompt=True)
    images = [Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3))) for _ in range(pairs)]
    inputs = processor(
        text=[prompt] * pairs, images=[[image] for image in images], add_special_tokens=False, return_tensors="pt"
    )
    vocab = len(processor.tokenizer)
    answers = torch.tensor([[rng.randrange(vocab // 2, vocab) for _ in range(answer_tokens)] for _ in range(2 * pairs)])
    width = inputs["input_ids"].shape[1]
    batch = {
        "input_ids": torch.cat([inputs["input_ids"].repeat(2, 1), answers], dim=1),
        "attention_mask": torch.ones(2 * pairs, width + answer_tokens, dtype=torch.long),
        "completion_mask": torch.cat([torch.zeros(2 * pairs, width), torch.ones_like(answers)], dim=1),
        "pixel_values": inputs["pixel_values"].repeat(2, 1),
        "image_grid_thw": inputs["image_grid_thw"].repeat(2, 1),
    }
    if "mm_token_type_ids" in inputs:
        batch["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"].repeat(2, 1), torch.zeros_like(answers)], 1)
    return batch


def sequence_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's summed log-prob of its answer tokens."""
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    logits = model(**inputs).logits[:, :-1].float()
    logps = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (logps * batch["completion_mask"][:, 1:]).sum(-1)


def dpo_loss(logps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Sigmoid DPO over [chosen rows, rejected rows]."""
    chosen, rejected = (logps - reference).chunk(2)
    return -F.logsigmoid(BETA * (chosen - rejected)).mean()


def run(mode: str, model_dir: Path, device: str, steps: int, save_dir: Path) -> dict:
    """`steps` DPO steps, then the final loss, the gathered save and its reloaded loss. Sharded: this process was
    started by `accelerate launch --config_file`, whose FSDP2 plugin the Accelerator picks up."""
    from accelerate import Accelerator

    precision = sharding.mixed_precision("fsdp2", checkpoint_dtype(model_dir))
    accelerator = Accelerator() if mode == "sharded" else Accelerator(mixed_precision=precision, cpu=device == "cpu")
    batch = {k: v.to(accelerator.device) for k, v in pair_batch(model_dir, pairs=4, answer_tokens=16, seed=0).items()}
    with torch.no_grad():  # the reference pass before training, as the pipeline caches it
        reference = sequence_logps(load_model(model_dir, str(accelerator.device)), batch)
    model = load_model(model_dir).train()
    if mode == "unsharded" and precision == "bf16":
        model.float()  # as FSDP2 keeps float32 master weights under bf16 mixed precision
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    losses, seconds = [], []
    for _ in range(steps):
        start = time.perf_counter()
        loss = dpo_loss(sequence_logps(model, batch), reference)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        seconds.append(round(time.perf_counter() - start, 3))
    with torch.no_grad():
        final = dpo_loss(sequence_logps(model, batch), reference).item()
    weights = accelerator.get_state_dict(model)  # every process: a collective under FSDP2
    result = {"mode": mode, "distributed_type": str(accelerator.distributed_type), "fsdp2": accelerator.is_fsdp2}
    if accelerator.is_main_process:
        save_gathered(weights, model_dir, save_dir)
        result |= {"mixed_precision": precision, "losses": losses, "step_seconds": seconds, "final_loss": final}
        result |= {"reloaded_loss": reloaded_loss(save_dir, batch, reference, precision, accelerator.device)}
        result |= {"saved_dtype": checkpoint_dtype(save_dir), **peak_memory(accelerator.device)}
    accelerator.wait_for_everyone()
    return result


def reloaded_loss(
    save_dir: Path, batch: dict[str, torch.Tensor], reference: torch.Tensor, precision: str, device: torch.device
) -> float:
    """The saved folder loaded unsharded, scored on the batch under the run's autocast."""
    model = load_model(save_dir, str(device))
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return dpo_loss(sequence_logps(model, batch), reference).item()


def peak_memory(device: torch.device) -> dict[str, float | None]:
    if device.type != "cuda":
        return {"peak_allocated_gib": None}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


def fsdp2_leg(model_dir: Path, device: str, steps: int, work: Path, timeout: float) -> dict:
    """Both runs in processes of their own (the sharded one on the generated file, on CUDA only: accelerate ignores
    FSDP on CPU) and how they compare."""
    precision = sharding.mixed_precision("fsdp2", checkpoint_dtype(model_dir))
    config = sharding.write_accelerate_config(work / sharding.CONFIG_FILE, "fsdp2", 1, precision)
    from accelerate.commands.config.config_args import load_config_from_file

    leg: dict = {"accelerate_config": load_config_from_file(str(config)).to_dict(), "steps": steps}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    modes = {"unsharded": [sys.executable]} | ({"sharded": launch} if device.startswith("cuda") else {})
    for mode, prefix in modes.items():
        out = work / f"{mode}.json"
        worker = [__file__, "--mode", mode, "--model", str(model_dir), "--device", device, "--steps", str(steps)]
        worker += ["--save", str(work / f"{mode}_saved"), "--result", str(out)]
        exited = subprocess.run(prefix + worker, timeout=timeout, capture_output=True, text=True)
        leg[mode] = json.loads(out.read_text()) if out.exists() else {"failed": exited.stderr[-4000:]}
    if "sharded" not in modes:
        leg["sharded"] = {"skipped": "accelerate does not shard on CPU (its FSDP plugin is ignored there)"}
    return leg | verdicts(leg)


def verdicts(leg: dict) -> dict:
    """Whether each save reloads to its run's final loss, and how far the sharded losses are from the unsharded."""
    out = {}
    for mode in ("sharded", "unsharded"):
        run_ = leg[mode]
        if "reloaded_loss" in run_:
            gap = abs(run_["reloaded_loss"] - run_["final_loss"])
            out[f"{mode}_reload_gap"] = gap
            out[f"{mode}_reload_ok"] = gap <= RELOAD_TOLERANCE
    if "losses" in leg["sharded"] and "losses" in leg["unsharded"]:
        gap = max(abs(a - b) for a, b in zip(leg["sharded"]["losses"], leg["unsharded"]["losses"]))
        out |= {"max_step_loss_gap": gap, "steps_agree": gap <= AGREEMENT_TOLERANCE}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="one run of the fsdp2 leg (started by gpu_device.py)")
    parser.add_argument("--mode", choices=("sharded", "unsharded"), required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    result = run(args.mode, args.model, args.device, args.steps, args.save)
    if "losses" in result:  # the main process's figures
        args.result.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
