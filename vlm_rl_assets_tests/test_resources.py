import shutil

import pytest

from vlm_rl_assets.definitions import defs
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store.base import MissingUpstreamError


def config_file(tmp_path, model_path: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"model: {{path: '{model_path}'}}\ncategories:\n  color: {{source: 'synthetic:color'}}\n")
    return str(path)


def test_configured_model_must_be_a_save_pretrained_folder(tmp_path, tiny_vlm_dir):
    resource = PipelineResource(config_path=config_file(tmp_path, str(tmp_path / "nowhere")))
    with pytest.raises(MissingUpstreamError, match="not a save_pretrained folder"):
        resource.base_model_dir()
    shutil.copytree(tiny_vlm_dir, tmp_path / "model")  # a checked folder: weights, processor, chat template
    assert (
        PipelineResource(config_path=config_file(tmp_path, str(tmp_path / "model"))).base_model_dir()
        == tmp_path / "model"
    )


def test_embedded_model_not_built_says_how_to_build_it(tmp_path):
    resource = PipelineResource(config_path=config_file(tmp_path, "embedded"), storage_root=str(tmp_path / "store"))
    with pytest.raises(MissingUpstreamError, match="--select base_model"):
        resource.base_model_dir()


def test_category_stages_share_the_configured_partitions():
    graph = defs.resolve_asset_graph()
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
