"""Rollout sharding and the temperature sweep, on a fake engine (no model): which shards a run samples, and the rows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from vlm_rl_assets.model.fingerprint import model_fingerprint
from vlm_rl_assets.rollouts.engine import Completion, GenerationRequest, SamplingParams
from vlm_rl_assets.rollouts.sampling import sample_rollouts, split_samples
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rollouts.shards import sharded_rollouts
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table, retemplated_copy

WORDS = ("red", "green", "blue", "circle", "square", "Answer:")


class FakeEngine:
    """Responses drawn from (seed, prompt, sample); counts the prompts it was asked for."""

    name = "fake"

    def __init__(self) -> None:
        self.prompts_sampled = 0

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress=None
    ) -> list[list[Completion]]:
        self.prompts_sampled += len(requests)
        out = []
        for request in requests:
            group = []
            for i in range(params.n):
                rng = random.Random(f"{params.seed}:{params.temperature}:{request.prompt_text}:{i}")
                text = " ".join(rng.choices(WORDS, k=3))
                group.append(Completion(text, 3, "stop"))
            out.append(group)
        return out


def _prompts(n: int) -> pl.DataFrame:
    return prompt_table({f"p{i:02d}": ("text", "red") for i in range(n)}, "color")


def _run(
    root: Path,
    prompts: pl.DataFrame,
    engine: FakeEngine | None = None,
    *,
    shard_prompts: int,
    policy: str = "pol",
    n: int = 4,
    seed: int = 0,
    temperatures: Sequence[float] = (),
):
    return sharded_rollouts(
        engine or FakeEngine(),
        LocalStore(root),
        "color",
        prompts,
        [()] * prompts.height,
        SamplingParams(n=n, seed=seed),
        policy,
        shard_prompts=shard_prompts,
        temperatures=temperatures,
    )


def test_a_rerun_with_the_same_inputs_reuses_every_shard(tmp_path: Path) -> None:
    first = _run(tmp_path, _prompts(7), shard_prompts=3)
    engine = FakeEngine()
    again = _run(tmp_path, _prompts(7), engine, shard_prompts=3)
    assert (first.generated, first.reused) == ((0, 1, 2), ())
    assert (again.generated, again.reused, engine.prompts_sampled) == ((), (0, 1, 2), 0)
    assert_frame_equal(again.table, first.table)
    assert again.table.height == 7 * 4
    assert again.table["prompt_id"].unique(maintain_order=True).to_list() == _prompts(7)["prompt_id"].to_list()


@pytest.mark.parametrize(
    "change",
    [
        {"policy": "other-policy"},
        {"seed": 1},
        {"n": 5},
        {"shard_prompts": 2},
        {"temperatures": [0.5, 1.5]},
        {"prompts": 8},
    ],
)
def test_changed_inputs_regenerate_every_shard(tmp_path: Path, change: dict) -> None:
    _run(tmp_path, _prompts(6), shard_prompts=3)
    changed = {"shard_prompts": 3, **change}
    rerun = _run(tmp_path, _prompts(changed.pop("prompts", 6)), **changed)
    assert rerun.reused == ()


def test_an_edited_chat_template_regenerates_every_shard(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    edited = retemplated_copy(tiny_vlm_dir, tmp_path / "edited")  # same weights, other prompt tokens
    _run(tmp_path / "store", _prompts(4), shard_prompts=2, policy=model_fingerprint(tiny_vlm_dir))
    engine = FakeEngine()
    rerun = _run(tmp_path / "store", _prompts(4), engine, shard_prompts=2, policy=model_fingerprint(edited))
    assert (rerun.reused, engine.prompts_sampled) == ((), 4)


def test_a_changed_prompt_text_with_the_same_ids_regenerates(tmp_path: Path) -> None:
    _run(tmp_path, _prompts(4), shard_prompts=2)
    retemplated = _prompts(4).with_columns(prompt_text=pl.col("prompt_text") + " Think step by step.")
    assert _run(tmp_path, retemplated, shard_prompts=2).reused == ()


def test_shards_sample_with_their_own_seeds(tmp_path: Path) -> None:
    table = _run(tmp_path, _prompts(4), shard_prompts=2).table
    assert table["seed"].n_unique() == 2  # one per shard, derived from the base seed and the shard index


def test_manifest_names_the_shards_and_prompts(tmp_path: Path) -> None:
    run = _run(tmp_path, _prompts(5), shard_prompts=2)
    manifest = LocalStore(tmp_path).read_table("rollouts", "color/manifest", schemas.ROLLOUT_MANIFEST)
    assert_frame_equal(manifest, run.manifest)
    assert manifest["shards"][0].to_list() == [f"color/shards/{manifest['fingerprint'][0]}/{i:05d}" for i in range(3)]
    assert manifest["prompt_ids"][0].to_list() == _prompts(5)["prompt_id"].to_list()
    assert manifest["rows"][0] == 20


def test_a_damaged_shard_set_is_refused_with_what_to_delete(tmp_path: Path) -> None:
    first = _run(tmp_path, _prompts(4), shard_prompts=2)
    key = first.manifest["shards"][0][1]
    store = LocalStore(tmp_path)
    store.write_table("rollouts", key, store.read_table("rollouts", key, schemas.ROLLOUTS).head(3), schemas.ROLLOUTS)
    with pytest.raises(RuntimeError, match="delete that shard folder and rerun"):
        _run(tmp_path, _prompts(4), shard_prompts=2)


def test_no_prompts_give_an_empty_table(tmp_path: Path) -> None:
    run = _run(tmp_path, _prompts(0), shard_prompts=2)
    assert run.table.height == 0 and run.manifest["rows"][0] == 0


@pytest.mark.parametrize(
    ("n", "temperatures", "split"),
    [(8, [0.7, 1.0, 1.3], [3, 3, 2]), (6, [0.5, 1.0], [3, 3]), (4, [1.0], [4]), (3, [0.2, 0.4, 0.6], [1, 1, 1])],
)
def test_split_samples(n: int, temperatures: list[float], split: list[int]) -> None:
    assert split_samples(n, temperatures) == list(zip(temperatures, split))


def test_a_sweep_wider_than_the_group_is_refused() -> None:
    with pytest.raises(ValueError, match="samples_per_prompt or shorten engine.temperatures"):
        split_samples(2, [0.5, 1.0, 1.5])


def test_sweep_rows_record_their_temperature_and_keep_sample_idx_unique() -> None:
    prompts = _prompts(3)
    table = sample_rollouts(FakeEngine(), prompts, [()] * 3, SamplingParams(n=8, seed=0), "pol", [0.7, 1.0, 1.3])
    assert table.height == 3 * 8
    for _, group in table.group_by("prompt_id"):
        group = group.sort("sample_idx")
        assert group["sample_idx"].to_list() == list(range(8))
        assert group["temperature"].to_list() == [0.7] * 3 + [1.0] * 3 + [1.3] * 2
        assert group.group_by("temperature").agg(pl.col("seed").n_unique())["seed"].to_list() == [1, 1, 1]
    assert table["seed"].n_unique() == 3  # each temperature samples with its own seed


def test_config_takes_a_sweep_and_a_shard_size() -> None:
    assert EngineSettings().temperatures == [] and EngineSettings().shard_prompts == 256
    assert EngineSettings(temperatures=[0.7, 1.3], shard_prompts=8).temperatures == [0.7, 1.3]
    with pytest.raises(ValueError, match="above 0 and at most 2"):
        EngineSettings(temperatures=[0.0, 1.0])
