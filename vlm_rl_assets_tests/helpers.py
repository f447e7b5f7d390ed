"""Small table, pair and worker-process builders shared by the tests."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest
from PIL import Image, ImageDraw

from vlm_rl_assets.store import schemas

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
COLOURS = ("red", "green", "blue", "yellow", "purple")

S3_BUCKET = "pipeline"  # the bucket the `s3` fixture (conftest.py) creates on its moto server


def s3_keys(client, prefix: str) -> list[str]:
    """The keys under `prefix` in `S3_BUCKET`, as the `s3` fixture's client (straight to moto) lists them."""
    return [obj["Key"] for obj in client.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix).get("Contents", [])]


def rollout_table(groups: dict[str, list[str]]) -> pl.DataFrame:
    rows = [
        {
            "prompt_id": pid,
            "sample_idx": idx,
            "response": text,
            "n_tokens": len(text.split()),
            "finish_reason": "stop",
            "policy_id": "p0",
            "engine": "hf",
            "seed": 0,
            "temperature": 1.0,
            "top_p": 1.0,
        }
        for pid, texts in groups.items()
        for idx, text in enumerate(texts)
    ]
    return pl.DataFrame(rows, schema=schemas.ROLLOUTS)


def prompt_table(answers: dict[str, tuple[str, str]], category: str = "count") -> pl.DataFrame:
    """answers: prompt_id -> (answer_type, answer)."""
    rows = [
        {
            "prompt_id": pid,
            "category": category,
            "split": "train",
            "question": "q",
            "prompt_text": f"question {pid}",
            "answer": answer,
            "answer_type": answer_type,
            "reference": answer,
            "choices": [],
            "images": [f"images/{pid}.png"],
            "objects": [],
        }
        for pid, (answer_type, answer) in answers.items()
    ]
    return pl.DataFrame(rows, schema=schemas.PROMPTS)


def colour_pairs(n: int, seed: int, rejected: Callable[[int], str] | None = None, **fields):
    """n DPO pairs on one-circle images: chosen names the circle's colour, rejected (by default) the next colour;
    `fields` (beta, default 0.1; reference log-probs) go to every PreferencePair."""
    from vlm_rl_assets.dpo.training import PreferencePair  # imports TRL: only the tests that train pay for it

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        image = Image.new("RGB", (112, 112), "white")
        x, y = rng.randint(22, 90), rng.randint(22, 90)
        ImageDraw.Draw(image).ellipse([x - 22, y - 22, x + 22, y + 22], fill=COLOURS[i % 5])
        wrong = rejected(i) if rejected else f"Answer: {COLOURS[(i + 1) % 5]}"
        pairs.append(
            PreferencePair(
                "What colour is the shape?", (image,), f"Answer: {COLOURS[i % 5]}", wrong, **({"beta": 0.1} | fields)
            )
        )
    return pairs


def retemplate(model_dir: Path) -> None:
    """Edit the chat template of the save_pretrained folder `model_dir`: every prompt gains an instruction, so the
    same weights see other tokens."""
    template = model_dir / "chat_template.jinja"
    template.write_text(template.read_text() + "{{- 'Answer briefly.' }}")


def retemplated_copy(model_dir: Path, dest: Path) -> Path:
    """A copy of `model_dir` at `dest`, with `retemplate`'s edit."""
    shutil.copytree(model_dir, dest)
    retemplate(dest)
    return dest


def pretend_upgraded(monkeypatch: pytest.MonkeyPatch, library: str) -> None:
    """Make `library` report another installed version to the keys that carry library versions."""
    from vlm_rl_assets.training import libraries

    installed = libraries.version
    monkeypatch.setattr(libraries, "version", lambda name: installed(name) + (".post1" if name == library else ""))


def verdicts(category: str, model: str, correct: list[bool | None]) -> pl.DataFrame:
    """Benchmark verdicts of one model on prompts `<category>0`, `<category>1`, ... (None: a verdict without a result)."""
    return pl.DataFrame(
        {
            "prompt_id": [f"{category}{i}" for i in range(len(correct))],
            "category": category,
            "response": "",
            "score": [None if c is None else float(c) for c in correct],
            "correct": correct,
            "model": model,
        },
        schema_overrides={"score": pl.Float64, "correct": pl.Boolean},
    )


def start_worker(module: str, args: list[str], out_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m module args` from the repo, with `env` added to this process's, its output in files in `out_dir` (a
    full pipe would stall it)."""
    env = {**os.environ, **(env or {}), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "stdout.txt", "w") as out, open(out_dir / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out, stderr=err)


def finish_worker(process: subprocess.Popen, out_dir: Path) -> dict:
    """Wait for a worker started by `start_worker`; its last stdout line, as JSON."""
    process.wait(timeout=300)
    assert process.returncode == 0, (out_dir / "stderr.txt").read_text()[-3000:]
    return json.loads((out_dir / "stdout.txt").read_text().strip().splitlines()[-1])


def kill_when(process: subprocess.Popen, out_dir: Path, ready: Callable[[], bool], what: str) -> None:
    """SIGKILL a worker from `start_worker` as soon as `ready()` holds (polled), as a crash would: no cleanup runs."""
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert process.poll() is None, f"the worker ended unkilled: {(out_dir / 'stderr.txt').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in 240 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


def loss_on(trainer, examples: list[dict]) -> torch.Tensor:
    """The trainer's loss on one fixed batch (built fresh: collators consume their examples)."""
    import torch

    batch = trainer.data_collator(examples)
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch)


def perturb(model: torch.nn.Module) -> None:
    """The same fixed nudge to every weight: a policy that differs from its reference, so log-ratios are not 0."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.sin(torch.arange(param.numel(), dtype=param.dtype)).view_as(param))
