import shutil

import dagster as dg
import pytest

from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.definitions import build_defs
from vlm_rl_assets.orchestration.partitions import Partitions
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.orchestration.upstream import materialize_command
from vlm_rl_assets.store.base import MissingUpstreamError


def config_file(tmp_path, model_path: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"model: {{path: '{model_path}'}}\ncategories:\n  color: {{source: 'synthetic:color'}}\n")
    return str(path)


def test_configured_model_must_be_a_save_pretrained_folder(tmp_path, tiny_vlm_dir):
    resource = PipelineResource.from_file(config_file(tmp_path, str(tmp_path / "nowhere")))
    with pytest.raises(MissingUpstreamError, match="not a save_pretrained folder"):
        resource.base_model_dir()
    shutil.copytree(tiny_vlm_dir, tmp_path / "model")  # a checked folder: weights, processor, chat template
    assert (
        PipelineResource.from_file(config_file(tmp_path, str(tmp_path / "model"))).base_model_dir()
        == tmp_path / "model"
    )


def test_embedded_model_not_built_says_how_to_build_it(tmp_path):
    resource = PipelineResource.from_file(config_file(tmp_path, "embedded"), str(tmp_path / "store"))
    with pytest.raises(MissingUpstreamError, match="base_model checkpoint 'embedded' not found") as missing:
        resource.base_model_dir()
    command = materialize_command(missing.value.asset, missing.value.key, Partitions.of(resource.config))
    assert command == "`dagster asset materialize -m vlm_rl_assets.definitions --select base_model`"


def test_the_command_names_the_partition_the_store_key_belongs_to():
    one, two = Partitions(("color", "count")), Partitions(("color", "count"), rounds=2)
    assert materialize_command("rollouts", "color", one).endswith("--select rollouts --partition color`")
    assert materialize_command("rollouts", "round2/color", two).endswith("--partition 'color|2'`")
    assert materialize_command("policy_checkpoint", "mixture", one).endswith("--select policy_checkpoint`")
    assert materialize_command("policy_checkpoint", "round2/mixture", two).endswith("--partition 2`")


def test_category_stages_share_the_configured_partitions():
    graph = build_defs(load_config()).resolve_asset_graph()
    partitioned = {key.to_user_string(): graph.get(key).partitions_def for key in graph.get_all_asset_keys()}
    keys = {name: tuple(p.get_partition_keys()) for name, p in partitioned.items() if p is not None}
    assert set(keys) == {
        "prompt_mixture",
        "rollouts",
        "filtered_rollouts",
        "judged_pairs",
        "dpo_checkpoint",
        "benchmark_scores",
    }
    assert set(keys.values()) == {("color", "shape_choice", "count", "describe", "scene")}
    assert {n for n, p in partitioned.items() if p is None} == {
        "base_model",
        "policy_checkpoint",
        "release_report",
        "promoted_policy",
        "external_benchmarks",
    }


def test_partitions_are_the_configs_given_to_build_defs(tmp_path):
    """One validated config makes partitions, assets and resource alike: another config's categories and round count
    are its partitions in the same process, and under GRPO the category's training step is named for it."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "rounds: 2\ntraining: {algorithm: grpo}\ncategories:\n  alpha: {source: 'synthetic:color'}\n"
        "  beta2: {source: 'synthetic:count'}\n"
    )
    config = load_config(path)
    defs = build_defs(config)
    graph = defs.resolve_asset_graph()
    rollouts = graph.get(dg.AssetKey("rollouts")).partitions_def
    assert sorted(rollouts.get_partition_keys()) == ["alpha|1", "alpha|2", "beta2|1", "beta2|2"]
    assert graph.get(dg.AssetKey("release_report")).partitions_def.get_partition_keys() == ["1", "2"]
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert "grpo_checkpoint" in keys and "dpo_checkpoint" not in keys and "round_gain" in keys
    assert defs.resources["pipeline"].config is config


def test_a_category_name_cannot_be_read_as_a_round(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("categories:\n  '2': {source: 'synthetic:color'}\n")
    with pytest.raises(ConfigError, match="must start with a letter"):
        load_config(path)
