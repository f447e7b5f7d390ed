from pathlib import Path

import pytest

from vlm_rl_assets.config import ConfigError, configured, load_config

REPO = Path(__file__).parents[1]


def write(tmp_path, text):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_bundled_default_is_valid_and_has_five_categories():
    config = load_config()
    assert len(config.categories) >= 5
    assert {c.template for c in config.categories.values()} == {"plain", "cot"}


def test_env_var_selects_a_users_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_RL_CONFIG", str(write(tmp_path, "categories:\n  only: {source: 'synthetic:color'}\n")))
    assert list(configured().categories) == ["only"]
    assert list(load_config().categories) != ["only"]  # only configured() reads the variable: load_config its path


@pytest.mark.parametrize(
    "text, message",
    [
        ("categories: {}\n", "categories is empty"),
        ("categories:\n  c: {source: 'synthetic:ocr'}\n", "categories.c.source"),
        ("categories:\n  c: {source: 'synthetic:color', beta: -1}\n", "categories.c.beta"),
        ("categories:\n  c: {source: 'synthetic:color', betta: 1}\n", "categories.c.betta"),
        ("engine: {batch_size: 0}\ncategories:\n  c: {source: 'synthetic:color'}\n", "engine.batch_size"),
        ("engine: {kind: sglang}\ncategories:\n  c: {source: 'synthetic:color'}\n", "engine.kind"),
        ("max_image_pixels: 0\ncategories:\n  c: {source: 'synthetic:color'}\n", "max_image_pixels"),
        ("categories:\n  c: {source: d.jsonl, bench_fraction: 0.6, dev_fraction: 0.4}\n", "leave no rows for train"),
        (
            "categories:\n  c: {source: d.jsonl, bootstrap_fraction: 0.7}\n",
            "0.1 \\+ bootstrap_fraction 0.7 leave no rows",
        ),
        ("eval: {split: test}\ncategories:\n  c: {source: 'synthetic:color'}\n", "eval.split"),
        ("- a list\n", "must hold a mapping"),
        ("categories: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="VLM_RL_CONFIG"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_category_lists_configured_ones():
    with pytest.raises(KeyError, match="configured categories"):
        load_config().category("nope")


def test_dpo_loss_is_trls_loss_types_with_weights_and_a_per_category_override(tmp_path):
    text = (
        "training: {loss_type: [sigmoid, bco_pair, sft], loss_weights: [0.8, 0.2, 1.0]}\n"
        "categories:\n  c: {source: 'synthetic:color', loss: {loss_type: ipo}}\n  d: {source: 'synthetic:color'}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.training.loss_type == ("sigmoid", "bco_pair", "sft") and config.training.loss_weights == (
        0.8,
        0.2,
        1.0,
    )
    assert config.category("c").loss.loss_type == ("ipo",) and config.category("d").loss is None
    (own_run, own), (shared_run, shared) = config.dpo_settings("c"), config.dpo_settings("d")  # dpo_checkpoint[c]'s
    assert (own.loss_type, own.loss_weights, own_run.learning_rate) == (("ipo",), None, config.training.learning_rate)
    assert shared == config.training.dpo() == config.dpo_settings()[1]  # and the mixture: training's loss
    assert own_run == shared_run == config.dpo_settings()[0] == config.training.shared()  # no mixture overrides set
    assert shared.loss_type == config.training.loss_type and not hasattr(own_run, "loss_type")  # each its own part
    with pytest.raises(ConfigError, match="loss_weights has 1 entries for 2"):
        load_config(
            write(tmp_path, "training: {loss_type: [sigmoid, sft], loss_weights: [1.0]}\n" + text.split("\n", 1)[1])
        )
    with pytest.raises(ConfigError, match="training.loss_type"):
        load_config(write(tmp_path, "training: {loss_type: [dpo]}\n" + text.split("\n", 1)[1]))


def test_the_mixtures_own_epochs_and_learning_rate_train_only_the_policy(tmp_path):
    text = (
        "training: {epochs: 3, learning_rate: 2.0e-5, mixture: {epochs: 1, learning_rate: 1.0e-4}}\n"
        "categories:\n  c: {source: 'synthetic:color', loss: {loss_type: ipo}}\n  d: {source: 'synthetic:color'}\n"
    )
    config = load_config(write(tmp_path, text))
    (policy, policy_loss), (own, _), (shared, _) = (config.dpo_settings(x) for x in (None, "c", "d"))
    assert (policy.epochs, policy.learning_rate, policy_loss.loss_type) == (1, 1.0e-4, config.training.loss_type)
    assert {(s.epochs, s.learning_rate) for s in (own, shared)} == {(3, 2.0e-5)}  # dpo_checkpoint[c]: training's
    assert config.grpo_settings()[0] == shared  # GRPO's runs, the policy's too, train with training's own


def test_training_scale_options(tmp_path):
    category = "categories:\n  c: {source: 'synthetic:color'}\n"
    default = load_config(write(tmp_path, category)).training
    assert (default.lora, default.freeze_vision_tower, default.num_processes, default.save_steps) == (
        None,
        False,
        1,
        50,
    )
    text = "training: {lora: {r: 8, target_modules: [q_proj, v_proj]}, freeze_vision_tower: true, num_processes: 2}\n"
    training = load_config(write(tmp_path, text + category)).training
    assert training.lora.r == 8 and training.lora.alpha == 32 and training.lora.target_modules == ("q_proj", "v_proj")
    assert training.freeze_vision_tower and training.num_processes == 2
    with pytest.raises(ConfigError, match="make batch_size a multiple of num_processes"):
        load_config(write(tmp_path, "training: {batch_size: 16, num_processes: 3}\n" + category))
    with pytest.raises(ConfigError, match="training.lora.target_modules"):
        load_config(write(tmp_path, "training: {lora: {target_modules: all}}\n" + category))


def test_sorted_losses_need_one_beta_across_the_policys_mixture(tmp_path):
    categories = "categories:\n  c: {source: 'synthetic:color', beta: 0.1}\n  d: {source: 'synthetic:count', beta: 0.5"
    with pytest.raises(ConfigError, match=r"training.loss_type aot.*categories.<c>.beta \{'c': 0.1, 'd': 0.5\}"):
        load_config(write(tmp_path, "training: {loss_type: aot}\n" + categories + "}\n"))
    assert load_config(write(tmp_path, "training: {loss_type: aot}\n" + categories + ", mixture_weight: 0}\n"))
    own = load_config(write(tmp_path, categories + ", loss: {loss_type: aot_unpaired}}\n"))  # d's own run: one beta
    assert own.dpo_settings("d")[1].loss_type == ("aot_unpaired",)


def test_a_dataset_has_bootstrap_rows_only_for_the_embedded_model(tmp_path):
    """With model.path embedded a dataset category's hashed rows feed base_model's SFT too; with your own model they
    stay train, and synthetic categories never have them (the embedded base learns those from their own stream)."""
    text = "categories:\n  mine: {source: d.jsonl, bootstrap_fraction: 0.3}\n  color: {source: 'synthetic:color'}\n"
    config = load_config(write(tmp_path, "bootstrap: {examples_override: {mine: 700}}\n" + text))
    sizes, fractions = config.prompt_splits("mine")
    assert sizes == {"train": 1000, "dev": 200, "bench": 200, "bootstrap": 700}
    assert fractions == {"bench": 0.2, "dev": 0.1, "bootstrap": 0.3}
    assert "bootstrap" not in config.prompt_splits("color")[0]
    own = load_config(write(tmp_path, f"model: {{path: {tmp_path}}}\n" + text))
    assert own.prompt_splits("mine") == ({"train": 1000, "dev": 200, "bench": 200}, {"bench": 0.2, "dev": 0.1})


def test_gpu_training_processes_fit_the_gpus_resources_gives(tmp_path):
    rest = "model: {device: cuda}\ncategories:\n  c: {source: 'synthetic:color'}\n"
    with pytest.raises(ConfigError, match="num_processes 8 is more than the 4 GPUs"):
        load_config(write(tmp_path, "resources: {gpus_per_node: 4}\ntraining: {num_processes: 8}\n" + rest))
    sharded = "resources: {gpus_per_node: 8}\ntraining: {num_processes: 8, sharding: fsdp2}\n"
    assert load_config(write(tmp_path, sharded + rest)).training.num_processes == 8
    cpu = "training: {num_processes: 2}\ncategories:\n  c: {source: 'synthetic:color'}\n"
    assert load_config(write(tmp_path, cpu)).resources.cards == 1  # gloo processes on CPU hold no GPU


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_config_is_valid_and_planned(path, monkeypatch):
    """Run from the repository root, as model.path is read relative to the working directory: its model folder is
    found and the memory plan made. Whether it fits is the plan's to say (the Qwen2-VL examples' headers say why not
    at Qwen2-VL's max_pixels)."""
    monkeypatch.chdir(REPO)
    assert load_config(path, check_memory=False).memory_plan() is not None
