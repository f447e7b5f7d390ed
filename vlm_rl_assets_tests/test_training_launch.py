"""With training.num_processes > 1 the same worker trains under `accelerate launch`: two CPU processes over gloo."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForImageTextToText

from vlm_rl_assets.dpo.job import JOB_FILE, TRAINER_DIR, DPOJob, write_job
from vlm_rl_assets.dpo.launch import TrainingLaunchError, launch_job
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets_tests.helpers import colour_pairs


def test_two_cpu_processes_train_one_loadable_checkpoint(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    # cached reference log-probs, as the assets train: no reference model in any process
    pairs = colour_pairs(
        8, seed=3, rejected=lambda i: "Answer: no", beta=0.1, ref_chosen_logps=-30.0, ref_rejected_logps=-31.0
    )
    settings = TrainingSettings(
        batch_size=4, max_steps=2, save_steps=2, log_every=1, learning_rate=1e-3, num_processes=2
    )
    job = DPOJob(str(tiny_vlm_dir), str(tmp_path / "out"), settings)
    job_dir = write_job(tmp_path / "work", job, pairs, "tiny")
    lines: list[str] = []

    result = launch_job(job_dir, job, "cpu", lines.append)

    assert result.steps == 2 and result.resumed_from == 0
    assert result.examples == 8 and result.input_tokens > 0  # both processes' share (2 steps of 4 pairs), its cost
    assert [line.split(" (")[0] for line in lines if line.startswith("step ")] == ["step 1/2", "step 2/2", "step 2/2"]
    checkpoint = job_dir / TRAINER_DIR / "checkpoint-2"
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]  # 2 ranks
    assert not list((tmp_path / "out").glob("adapter_*"))
    trained = load_model(tmp_path / "out").state_dict()
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "out").state_dict().keys() == trained.keys()
    base = load_model(tiny_vlm_dir).state_dict()
    assert any(not (trained[k] == base[k]).all() for k in base)


def test_a_failed_launch_shows_the_workers_error_and_says_a_rerun_resumes(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    job = DPOJob(str(tiny_vlm_dir), str(tmp_path / "out"), TrainingSettings(batch_size=2, num_processes=2))
    job_dir = write_job(tmp_path / "work", job, colour_pairs(2, seed=0), "tiny")
    (job_dir / JOB_FILE).unlink()  # the launch starts (its accelerate config is there); every worker fails reading
    lines: list[str] = []
    with pytest.raises(TrainingLaunchError, match=r"(?s)exited with [1-9].*job\.json.*rerun: training resumes from"):
        launch_job(job_dir, job, "cpu", lines.append)
    assert any("job.json" in line for line in lines)  # the workers' output reached the caller's log as it came
