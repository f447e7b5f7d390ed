"""The pipeline on vLLM (its CPU build here, `make test-vllm`): one category's stages and the release with
`engine.kind: vllm` on the embedded checkpoint; a rollout run SIGKILLed mid-way resumes from its shards; vLLM and the
hf engine sample the same policy equally well."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from vlm_rl_assets.config import load_config
from vlm_rl_assets.evaluation.answer_cache import answers_key
from vlm_rl_assets.evaluation.benchmarks import bench_prompts
from vlm_rl_assets.evaluation.stats import bootstrap_ci, paired_delta
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.rollouts.engine import HFEngine, SamplingParams
from vlm_rl_assets.rollouts.shards import sharded_rollouts
from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets.store.quarantine import load_prompt_images
from vlm_rl_assets_tests.helpers import REPO, finish_worker, kill_when, start_worker

pytestmark = pytest.mark.vllm

CONFIG = Path(__file__).parent / "data" / "vllm_pipeline.yaml"
CATEGORY = "color"
UPSTREAM = ("base_model", "prompt_mixture", "images")  # what a rollout run reads


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """base_model, every stage of `color` and the release stages, on vLLM; (store root, metadata, log)."""
    out = tmp_path_factory.mktemp("vllm_pipeline")
    env = {"VLM_RL_CONFIG": str(CONFIG), "DAGSTER_HOME": str(out)}
    worker = start_worker("vlm_rl_assets_tests.pipeline_worker", [str(out / "store"), CATEGORY, "--release"], out, env)
    metadata = finish_worker(worker, out)
    return out / "store", metadata, (out / "stderr.txt").read_text()


def test_every_stage_and_the_release_run_on_vllm(vllm_run: tuple[Path, dict, str]) -> None:
    root, metadata, log = vllm_run
    assert "pre-flight: the vllm engine and the DPO trainer agree on 8 sampled prompts" in log
    store = LocalStore(root)
    rollouts = store.read_table("rollouts", CATEGORY, schemas.ROLLOUTS)  # read checks the hf engine's schema
    assert rollouts.schema == schemas.ROLLOUTS
    assert set(rollouts["engine"]) == {"vllm"}
    assert rollouts.height == metadata["rollouts"]["prompts"] * 6 == 24 * 6
    assert metadata["rollouts"]["generated_tokens"] == rollouts["n_tokens"].sum() > 0
    assert metadata["judged_pairs"]["pairs"] > 0 and metadata["dpo_checkpoint"]["steps"] > 0
    config = load_config(CONFIG)
    prompts = bench_prompts(store, [CATEGORY], config.eval.split)
    models = {"base": root / "base_model" / "embedded", "dpo": root / "dpo_checkpoint" / CATEGORY}
    models["policy"] = root / "policy_checkpoint" / "mixture"
    for name, folder in models.items():  # each model's bench answers, greedy and sampled, kept under vLLM's key
        key = answers_key(model_fingerprint(folder), "vllm", config.eval, config.engine.seed, prompts)
        answers = store.read_table("benchmark_answers", f"{CATEGORY}/{key}", schemas.BENCHMARK_ANSWERS)
        assert answers.height == 16 and answers["samples"].list.len().to_list() == [8] * 16, name
    scores = store.read_table("release_report", "scores", schemas.BENCHMARK_SCORES)
    assert set(scores.filter(pl.col("metric") == "accuracy")["model"]) == {"base", "policy"}


def _rollouts_cli(out: Path, env: dict[str, str], in_process: bool) -> subprocess.Popen:
    """`dagster asset materialize` of rollouts[color]; `in_process`: the step in the CLI's own process, so killing
    the CLI kills the step, as a crashed worker would."""
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "vlm_rl_assets.definitions",
        "--select",
        "rollouts",
        "--partition",
        CATEGORY,
    ]
    if in_process:
        command += ["--config-json", json.dumps({"execution": {"config": {"in_process": {}}}})]
    out.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(out), "HF_HUB_OFFLINE": "1"}
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        return subprocess.Popen(command, cwd=REPO, env=full_env, stdout=stdout, stderr=stderr)


def test_killed_vllm_rollouts_resume_from_their_shards_and_equal_the_uninterrupted_run(
    vllm_run: tuple[Path, dict, str], tmp_path: Path
) -> None:
    """The rerun samples only the missing shards, and its table equals the first run's (the same config, the same
    rows). vLLM's engine runs in the step's process here; what its own engine processes do when their parent is
    killed is test_vllm_judge_server.py's last test."""
    first_root, _, _ = vllm_run
    root = tmp_path / "store"
    for folder in UPSTREAM:
        shutil.copytree(first_root / folder, root / folder)
    (tmp_path / "pipeline.yaml").write_text(CONFIG.read_text() + f"storage: {{root: '{root}'}}\n")
    env = {"VLM_RL_CONFIG": str(tmp_path / "pipeline.yaml")}
    shards = root / "rollouts" / CATEGORY / "shards"
    manifest = root / "rollouts" / CATEGORY / "manifest.parquet"
    killed = _rollouts_cli(tmp_path / "killed", env, in_process=True)
    kill_when(killed, tmp_path / "killed", lambda: any(shards.rglob("*.parquet")) and not manifest.exists(), "shard")
    survivors = {p.name: p.stat().st_mtime_ns for p in shards.rglob("*.parquet")}

    resumed = _rollouts_cli(tmp_path / "resumed", env, in_process=False)
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed" / "stderr.txt").read_text()[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in shards.rglob("*.parquet")}
    assert 0 < len(survivors) < len(after) == 12
    assert {name: after[name] for name in survivors} == survivors  # finished shards reused, not rewritten
    table = LocalStore(root).read_table("rollouts", CATEGORY, schemas.ROLLOUTS)
    assert table.select("prompt_id", "sample_idx").is_unique().all() and table.height == 24 * 6
    assert_frame_equal(table, LocalStore(first_root).read_table("rollouts", CATEGORY, schemas.ROLLOUTS))


def _sample_accuracy(engine, prompts: pl.DataFrame, images, out: Path) -> tuple[pl.DataFrame, list[float]]:
    """The engine's rollouts of `prompts` (as the rollouts stage samples them) and each prompt's share judged right."""
    params = SamplingParams(n=16, temperature=1.0, max_new_tokens=24, seed=11)
    with engine:
        table = sharded_rollouts(
            engine, LocalStore(out), CATEGORY, prompts, images, params, "base", shard_prompts=64
        ).table
    scored = score_rollouts(table, prompts).scored
    per_prompt = scored.group_by("prompt_id", maintain_order=True).agg(pl.col("correct").mean()).sort("prompt_id")
    return table, per_prompt["correct"].to_list()


def test_vllm_and_hf_sample_the_same_policy_equally_well(vllm_run: tuple[Path, dict, str], tmp_path: Path) -> None:
    """Same checkpoint, prompts (every split of `color`: 48) and sampling; the samples differ (each engine has its
    own random stream) but their accuracy must not: the paired 95% CI of vLLM minus hf holds 0."""
    root, _, _ = vllm_run
    config = load_config(CONFIG)
    prompts = LocalStore(root).read_table("prompt_mixture", CATEGORY, schemas.PROMPTS)
    prompts, images, refused = load_prompt_images(
        LocalStore(root), prompts, asset="test", category=CATEGORY, max_pixels=10**8
    )
    assert refused.height == 0 and prompts.height == 48
    base = root / "base_model" / "embedded"
    engine_settings = config.engine.model_copy(update={"vllm_kv_cache_gib": 0.5})
    vllm_table, vllm_acc = _sample_accuracy(VLLMEngine(base, engine_settings), prompts, images, tmp_path / "v")
    hf_table, hf_acc = _sample_accuracy(HFEngine(base, batch_size=256), prompts, images, tmp_path / "h")
    assert vllm_table.schema == hf_table.schema == schemas.ROLLOUTS  # the same rows, whichever engine sampled
    assert vllm_table.select("prompt_id", "sample_idx").equals(hf_table.select("prompt_id", "sample_idx"))
    assert vllm_table["response"].to_list() != hf_table["response"].to_list()
    delta, low, high = paired_delta(vllm_acc, hf_acc)
    (vllm_mean, *vllm_ci), (hf_mean, *hf_ci) = bootstrap_ci(vllm_acc), bootstrap_ci(hf_acc)
    print(
        f"sample accuracy: vllm {vllm_mean:.3f} {vllm_ci}, hf {hf_mean:.3f} {hf_ci}, delta {delta:+.3f} [{low:+.3f}, {high:+.3f}]"
    )
    assert low <= 0 <= high
    assert 0.05 < hf_mean < 0.95  # a policy that learned something and left room: the comparison can tell


def test_the_code_location_and_the_hf_path_import_no_vllm_where_it_is_installed(tiny_vlm_dir: Path) -> None:
    """Loading the definitions, opening the hf engine and sampling with it: none of it imports vLLM."""
    check = (
        "import sys; from pathlib import Path; import vlm_rl_assets.definitions; "
        "from PIL import Image; from vlm_rl_assets.model.settings import ModelSettings; "
        "from vlm_rl_assets.rollouts.engine import GenerationRequest, SamplingParams; "
        "from vlm_rl_assets.rollouts.open import open_engine; from vlm_rl_assets.rollouts.settings import EngineSettings; "
        f"engine = open_engine(EngineSettings(), ModelSettings(), Path({str(tiny_vlm_dir)!r})); "
        "engine.generate([GenerationRequest('What colour is the shape?', (Image.new('RGB', (64, 64)),))], "
        "SamplingParams(n=2, max_new_tokens=4)); engine.close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'vllm'))"
    )
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
