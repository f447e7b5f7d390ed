"""A DPO or GRPO run SIGKILLed after a checkpoint resumes from it on rerun and ends where an uninterrupted run does;
incomplete checkpoints (a kill mid-save) are never resumed from; the work folder follows what determines the weights."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

from vlm_rl_assets.dpo.job import TRAINER_DIR, DPOJob, write_job
from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.dpo.training import PreferencePair
from vlm_rl_assets.grpo.training import grpo_work_folder
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.model.resume import latest_checkpoint
from vlm_rl_assets.training.libraries import KEYED_LIBRARIES
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets_tests import grpo_worker_slow
from vlm_rl_assets_tests.helpers import (
    colour_pairs,
    finish_worker,
    kill_when,
    pretend_upgraded,
    retemplated_copy,
    start_worker,
)

SETTINGS = TrainingSettings(batch_size=2, max_steps=8, save_steps=2, log_every=1, learning_rate=1e-3)


@pytest.fixture(scope="module")
def pairs() -> list[PreferencePair]:
    return colour_pairs(8, seed=2)


def _start(job_dir: Path, pause: float) -> subprocess.Popen:
    return start_worker("vlm_rl_assets_tests.dpo_worker_slow", [str(job_dir), str(pause)], job_dir)


def _saved_steps(trainer_dir: Path) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (written last) is readable; reading only, the run is live."""
    steps = []
    for state in trainer_dir.glob("checkpoint-*/trainer_state.json"):
        try:
            steps.append(json.loads(state.read_text())["global_step"])
        except ValueError:
            pass  # being written
    return steps


def _job(root: Path, model_dir: Path, pairs: list[PreferencePair]) -> tuple[Path, Path]:
    out_dir = root / "out"
    return write_job(root / "work", DPOJob(str(model_dir), str(out_dir), SETTINGS), pairs, "tiny"), out_dir


def test_killed_run_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_run(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path
) -> None:
    (killed_dir, killed_out), (fresh_dir, fresh_out) = (
        _job(tmp_path / n, tiny_vlm_dir, pairs) for n in ("killed", "fresh")
    )
    kill_when(_start(killed_dir, 0.5), killed_dir, lambda: bool(_saved_steps(killed_dir / TRAINER_DIR)), "checkpoint")
    assert not killed_out.exists()

    resumed_run, fresh_run = _start(killed_dir, 0.0), _start(fresh_dir, 0.0)
    resumed, uninterrupted = finish_worker(resumed_run, killed_dir), finish_worker(fresh_run, fresh_dir)

    assert resumed["resumed_from"] >= SETTINGS.save_steps and resumed["resumed_from"] % SETTINGS.save_steps == 0
    assert f"resuming from step {resumed['resumed_from']} " in (killed_dir / "stdout.txt").read_text()
    assert uninterrupted == {"steps": SETTINGS.max_steps, "resumed_from": 0}
    assert resumed["steps"] == uninterrupted["steps"]
    after_resume, after_one_go = load_model(killed_out).state_dict(), load_model(fresh_out).state_dict()
    base = load_model(tiny_vlm_dir).state_dict()
    assert any(not torch.allclose(after_one_go[k], base[k], atol=1e-4) for k in base)  # training moved the weights
    assert all(torch.allclose(after_resume[k], after_one_go[k], atol=1e-6, rtol=0) for k in base)


def test_a_killed_grpo_run_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_run(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    """Resumed in its second epoch: the checkpoint's weights, its sampling RNG state and each epoch's prompt order
    (drawn from seed and epoch) make the rest of the run sample and update exactly as the uninterrupted one."""
    settings = grpo_worker_slow.SETTINGS

    def start(name: str, pause: float) -> subprocess.Popen:
        args = [str(tiny_vlm_dir), str(tmp_path / name / "work"), str(tmp_path / name / "out"), str(pause)]
        return start_worker("vlm_rl_assets_tests.grpo_worker_slow", args, tmp_path / name)

    work_dir = grpo_worker_slow.work_folder(tiny_vlm_dir, tmp_path / "killed" / "work")
    fresh_run, killed_run = start("fresh", 0.0), start("killed", pause=0.5)
    kill_when(killed_run, tmp_path / "killed", lambda: 4 in _saved_steps(work_dir), "checkpoint 4")
    assert not (tmp_path / "killed" / "out").exists()

    resumed_run = start("killed", 0.0)
    resumed = finish_worker(resumed_run, tmp_path / "killed")
    uninterrupted = finish_worker(fresh_run, tmp_path / "fresh")

    assert resumed["resumed_from"] == 4 and uninterrupted["resumed_from"] == 0 and resumed["work_dir"] == str(work_dir)
    assert "resuming from step 4 " in (tmp_path / "killed" / "stdout.txt").read_text()
    assert resumed["steps"] == uninterrupted["steps"] == settings.max_steps
    after_resume, after_one_go = (load_model(tmp_path / n / "out").state_dict() for n in ("killed", "fresh"))
    base = load_model(tiny_vlm_dir).state_dict()
    assert any(not torch.allclose(after_one_go[k], base[k], atol=1e-4) for k in base)  # training moved the weights
    assert all(torch.allclose(after_resume[k], after_one_go[k], atol=1e-6, rtol=0) for k in base)


def test_incomplete_checkpoints_are_dropped(tmp_path: Path) -> None:
    for step, state in ((2, {"global_step": 2}), (4, {"global_step": 4}), (6, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(json.dumps(state))
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')  # killed mid-write

    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert latest_checkpoint(tmp_path / "absent") is None


def test_the_run_key_follows_what_determines_the_weights(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path
) -> None:
    job = DPOJob(str(tiny_vlm_dir), str(tmp_path / "out"), SETTINGS)
    folder = write_job(tmp_path, job, pairs, "tiny")
    assert (
        write_job(tmp_path, DPOJob(str(tiny_vlm_dir), "elsewhere", SETTINGS, torch_threads=2), pairs, "tiny") == folder
    )
    assert (
        write_job(tmp_path, DPOJob(str(tiny_vlm_dir), "", SETTINGS.model_copy(update={"log_every": 3})), pairs, "tiny")
        == folder
    )
    changed = (
        write_job(tmp_path, job, pairs, "another base model"),
        write_job(tmp_path, job, pairs[:-1], "tiny"),
        write_job(tmp_path, DPOJob(str(tiny_vlm_dir), "", SETTINGS.model_copy(update={"seed": 1})), pairs, "tiny"),
        write_job(
            tmp_path, DPOJob(str(tiny_vlm_dir), "", SETTINGS.model_copy(update={"num_processes": 2})), pairs, "tiny"
        ),
        write_job(tmp_path, DPOJob(str(tiny_vlm_dir), "", SETTINGS, DPOSettings(loss_type="ipo")), pairs, "tiny"),
    )
    assert len({folder, *changed}) == 6


def test_the_run_key_follows_the_chat_template_and_the_libraries(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = DPOJob(str(tiny_vlm_dir), "", SETTINGS)
    folder = write_job(tmp_path, job, pairs, model_fingerprint(tiny_vlm_dir))
    edited = retemplated_copy(tiny_vlm_dir, tmp_path / "edited")  # same weights, other prompt tokens
    keys = {folder, write_job(tmp_path, job, pairs, model_fingerprint(edited))}
    for library in KEYED_LIBRARIES:  # each pass upgrades one more
        pretend_upgraded(monkeypatch, library)
        keys.add(write_job(tmp_path, job, pairs, model_fingerprint(tiny_vlm_dir)))
    assert len(keys) == 2 + len(KEYED_LIBRARIES)


def test_the_grpo_work_folder_follows_what_determines_the_weights(tmp_path: Path) -> None:
    prompts, settings, grpo = grpo_worker_slow.prompts(), grpo_worker_slow.SETTINGS, grpo_worker_slow.GRPO
    folder = grpo_work_folder(tmp_path, "tiny", prompts, ["length"], settings, grpo)
    unkeyed = settings.model_copy(update={"log_every": 3, "save_steps": 1, "work_dir": "elsewhere"})
    assert grpo_work_folder(tmp_path, "tiny", prompts, ["length"], unkeyed, grpo) == folder
    recoloured = [dataclasses.replace(prompts[0], images=prompts[1].images), *prompts[1:]]
    changed = (
        grpo_work_folder(tmp_path, "another base model", prompts, ["length"], settings, grpo),
        grpo_work_folder(tmp_path, "tiny", prompts[:-1], ["length"], settings, grpo),
        grpo_work_folder(tmp_path, "tiny", recoloured, ["length"], settings, grpo),
        grpo_work_folder(tmp_path, "tiny", prompts, ["length", "count"], settings, grpo),
        grpo_work_folder(
            tmp_path, "tiny", prompts, ["length"], settings, grpo.model_copy(update={"num_generations": 4})
        ),
        grpo_work_folder(tmp_path, "tiny", prompts, ["length"], settings.model_copy(update={"seed": 1}), grpo),
    )
    assert len({folder, *changed}) == 7
