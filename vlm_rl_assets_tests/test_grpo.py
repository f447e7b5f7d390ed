"""training.algorithm: grpo: the judge as TRL's reward (failures left out of their group, never scored 0), the images
of prompts of unequal length, GRPO's health alarms, its settings, and a GRPO checkpoint from the pipeline scored by
benchmark_scores."""

from __future__ import annotations

import math
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from vlm_rl_assets.config import ConfigError, TrainingConfig, load_config
from vlm_rl_assets.grpo.health import grpo_health
from vlm_rl_assets.grpo.reward import JudgeReward
from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun, Verdict
from vlm_rl_assets.judging.rules import RuleJudge
from vlm_rl_assets.training.settings import HealthSettings, TrainingSettings
from vlm_rl_assets_tests.helpers import colour_pairs, prompt_table

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"


class EveryThirdFails:
    """A judge that times out on every third completion of a batch and otherwise scores by the response's length, so
    groups have reward spread."""

    name = "flaky"
    pure = False  # its outcome depends on the item key

    def judge(self, items: list[JudgeItem]) -> JudgeRun:
        return JudgeRun(
            [
                JudgeFailure("timeout", "no reply in 60 s")
                if int(item.key.rsplit("/", 1)[1]) % 3 == 0
                else Verdict(score=len(item.response) % 5 / 4, correct=False, reason="length")
                for item in items
            ]
        )


def said(*texts: str) -> list[list[dict]]:
    """Conversational completions, as GRPOTrainer passes them."""
    return [[{"role": "assistant", "content": text}] for text in texts]


def test_the_rule_judge_scores_completions_and_leaves_other_categories_to_theirs():
    reward = JudgeReward("count", RuleJudge(), prompt_table({"a": ("number", "3"), "b": ("number", "4")}))
    scores = reward(
        prompts=[None] * 4,
        completions=said("Answer: 3", "Answer: 5", "Answer: 4", "Answer: 4"),
        prompt_id=["a", "a", "b", "elsewhere"],
    )
    assert scores == [1.0, 0.0, 1.0, None]  # "elsewhere" is another category's prompt: not this reward's to score
    assert reward.judged == 3 and reward.failures == [] and reward.__name__ == "count"


def test_the_reward_counts_its_own_categorys_sampled_tokens_as_generated():
    from vlm_rl_assets import metering

    reward = JudgeReward("count", RuleJudge(), prompt_table({"a": ("number", "3")}))
    before = metering.counts()[metering.GENERATED_TOKENS]
    reward(
        prompts=[None] * 2,
        completions=said("Answer: 3", "Answer: 4"),
        prompt_id=["a", "elsewhere"],
        completion_ids=[[5, 6, 7], [8, 9]],
    )
    assert metering.counts()[metering.GENERATED_TOKENS] - before == 3  # the other category's reward counts its own


def test_judge_failures_become_none_never_zero_and_are_kept_with_their_reason():
    reward = JudgeReward("count", EveryThirdFails(), prompt_table({"a": ("number", "3")}))
    logged = {}
    scores = reward(
        prompts=[None] * 4,
        completions=said("x", "xy", "xyz", "wxyz"),
        prompt_id=["a"] * 4,
        log_metric=logged.__setitem__,
    )
    assert scores == [None, 0.5, 0.75, None]
    assert reward.failures == [("a/0/0", "timeout: no reply in 60 s"), ("a/0/3", "timeout: no reply in 60 s")]
    assert reward.failure_counts() == {"timeout": 2} and logged == {"judge_failures/count": 0.5}


def test_trl_leaves_unscored_completions_out_of_the_group_baseline(tiny_vlm_dir):
    """One GRPO step on the tiny VLM: the completions the judge failed on reach TRL as NaN rewards with advantage 0,
    and the others' advantages are centred on the mean of the scored ones only (a 0 would have pulled it down)."""
    from vlm_rl_assets.grpo.training import RLPrompt, grpo_trainer

    reward = JudgeReward(
        "color", EveryThirdFails(), prompt_table({f"p{i}": ("text", "red") for i in range(2)}, "color")
    )
    returned = []

    def recorded(**kwargs):
        returned.append(reward(**kwargs))
        return returned[-1]

    recorded.__name__ = "color"
    prompts = [RLPrompt(f"p{i}", pair.prompt_text, pair.images) for i, pair in enumerate(colour_pairs(2, seed=0))]
    settings = TrainingSettings(max_steps=1)
    grpo = GRPOSettings(num_generations=4, prompts_per_step=2, max_completion_length=6)
    trainer = grpo_trainer(tiny_vlm_dir, tiny_vlm_dir.parent / "grpo_out", prompts, [recorded], settings, grpo)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    [scores] = returned
    assert [s is None for s in scores] == [i % 3 == 0 for i in range(8)]
    rewards, advantages = list(trainer._logs["rewards"]["color"]), list(trainer._logs["advantages"])
    assert [math.isnan(r) for r in rewards] == [s is None for s in scores]
    for group in (range(0, 4), range(4, 8)):  # a prompt's num_generations completions
        scored = [i for i in group if scores[i] is not None]
        assert all(advantages[i] == 0.0 for i in group if scores[i] is None)
        assert sum(advantages[i] for i in scored) == pytest.approx(0.0, abs=1e-5)
    assert any(advantages) and any(not p.equal(before[name]) for name, p in trainer.model.named_parameters())


@pytest.mark.parametrize("longer", [" red", " Say the colour, then where the shape is."])
def test_grpo_places_the_images_of_prompts_of_unequal_length(tiny_vlm_dir, tmp_path, longer):
    """TRL left-pads the prompts but takes mm_token_type_ids, which place the image tokens for M-RoPE, from the
    processor: padded on the right, a shorter prompt's image moves a few tokens (wrong positions, silently) or, padded
    by more than the tokens before its image, get_rope_index fails with a shape mismatch."""
    from vlm_rl_assets.grpo.training import RLPrompt, grpo_trainer

    short, long = colour_pairs(2, seed=0)
    prompts = [RLPrompt("p0", short.prompt_text, short.images), RLPrompt("p1", long.prompt_text + longer, long.images)]
    rewards = [lambda completions, **_: [0.0] * len(completions)]
    grpo = GRPOSettings(num_generations=2, prompts_per_step=2, max_completion_length=4)
    trainer = grpo_trainer(tiny_vlm_dir, tmp_path, prompts, rewards, TrainingSettings(max_steps=1), grpo)
    image_token = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    marked = []  # per forward over whole prompts: are the tokens marked as image exactly the image tokens?

    def check(module, args, kwargs):
        ids, types = kwargs.get("input_ids"), kwargs.get("mm_token_type_ids")
        if types is not None and types.shape == ids.shape:
            marked.append(bool(((types == 1) == (ids == image_token)).all()))

    trainer.model.register_forward_pre_hook(check, with_kwargs=True)
    trainer.train()
    assert len(marked) >= 2 and all(marked)  # the sampling pass and the loss's


def _grpo_history(zero_std=0.2, kl=0.01, length=(20.0, 21.0), truncated=0.1, steps=4) -> list[dict]:
    first, last = length
    return [
        {
            "step": s,
            "loss": 0.01,
            "reward": 0.4 + 0.05 * s,
            "reward_std": 0.3,
            "rewards/color/mean": 0.4,
            "frac_reward_zero_std": zero_std,
            "kl": kl * s / steps,
            "completions/mean_length": first + (last - first) * (s - 1) / (steps - 1),
            "completions/clipped_ratio": truncated,
            "clip_ratio/region_mean": 0.0,
        }
        for s in range(1, steps + 1)
    ] + [{"train_runtime": 1.0}]


def test_a_healthy_grpo_run_has_no_alarms_and_reports_its_numbers():
    health = grpo_health(_grpo_history())
    assert health.alarms == []
    assert health.metrics["reward_first"] == pytest.approx(0.45) and health.metrics["reward_last"] == pytest.approx(0.6)
    assert health.metrics["reward_last/color"] == 0.4 and health.metrics["zero_std_share"] == pytest.approx(0.2)
    assert health.metrics["kl_max"] == pytest.approx(0.01) and health.metrics["length_drift"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "history, alarm",
    [
        (_grpo_history(zero_std=0.95), "95% of the groups got one reward"),
        (_grpo_history(kl=2.0), "KL to the base model reached 2"),
        (_grpo_history(length=(40.0, 4.0)), "went -90% .* completions are collapsing"),
        (_grpo_history(length=(10.0, 30.0)), "went \\+200% .* completions are growing"),
        (_grpo_history(truncated=0.9), "90% of the completions .* hit max_completion_length"),
    ],
)
def test_each_grpo_failure_mode_alarms_with_its_fix(history, alarm):
    health = grpo_health(history, HealthSettings())
    assert len(health.alarms) == 1
    assert re.search(alarm, health.alarms[0]), health.alarms[0]


def test_metrics_trl_logged_as_none_are_skipped():
    history = [{**entry, "kl": None} for entry in _grpo_history()[:-1]]  # TRL logs None for a metric with no value
    assert "kl_max" not in grpo_health(history).metrics


def write(tmp_path: Path, training: str, categories: str = "  c: {source: 'synthetic:color'}\n") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"training: {training}\ncategories:\n{categories}")
    return path


def test_grpo_settings_are_validated_and_explained(tmp_path):
    config = load_config(write(tmp_path, "{algorithm: grpo, learning_rate: 1.0e-6, grpo: {num_generations: 4}}"))
    assert config.training.algorithm == "grpo" and config.training.grpo.num_generations == 4
    assert load_config(write(tmp_path, "{}")).training.algorithm == "dpo"  # the default keeps DPO
    refusals = {
        "{algorithm: ppo}": r"training.algorithm: Input should be 'dpo' or 'grpo'",
        "{algorithm: grpo, grpo: {num_generations: 1}}": r"training.grpo.num_generations",
        "{grpo: {num_generations: 4}}": r"grpo settings are read only with algorithm: grpo",
        "{algorithm: grpo, num_processes: 2, batch_size: 16}": r"trains in the asset's process .* set num_processes: 1",
    }
    for training, message in refusals.items():
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, training))
    # DPO's settings may stay, unread, so one file serves both algorithms (the bundled default sets loss_type)
    both = load_config(write(tmp_path, "{algorithm: grpo, loss_type: [sigmoid, sft], batch_size: 16}"))
    assert both.training.algorithm == "grpo" and both.training.grpo == GRPOSettings()
    assert both.grpo_settings() == (TrainingSettings(batch_size=16), GRPOSettings())  # what GRPO trains with
    # a dumped DPO config lists the grpo defaults: it must load again (experiment variants round-trip)
    dumped = TrainingConfig().model_dump(mode="json")
    assert "grpo" in dumped and TrainingConfig.model_validate(dumped) == TrainingConfig()


def grpo_config(folder: Path, model_dir: Path) -> dict:
    """PipelineResource on two_categories.yaml with GRPO on the tiny VLM, 2 steps of 2 prompts x 2 completions."""
    from vlm_rl_assets.orchestration.resources import PipelineResource

    raw = yaml.safe_load(CONFIG.read_text())
    raw["model"]["path"] = str(model_dir)
    raw["training"] = {
        "algorithm": "grpo",
        "learning_rate": 1e-4,
        "max_steps": 2,
        "work_dir": str(folder / "work"),
        "grpo": {"num_generations": 2, "prompts_per_step": 2, "max_completion_length": 8},
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    return {"pipeline": PipelineResource.from_file(str(folder / "pipeline.yaml"), str(folder / "store"))}


@pytest.fixture(scope="module")
def grpo_run(tiny_vlm_dir, tmp_path_factory):
    """prompt_mixture, grpo_checkpoint (rule judge) and benchmark_scores of 'color' on the tiny VLM."""
    from vlm_rl_assets_tests.graphs import everything

    folder = tmp_path_factory.mktemp("grpo_pipeline")
    resources = grpo_config(folder, tiny_vlm_dir)
    selection = ["prompt_mixture", "grpo_checkpoint", "benchmark_scores"]
    result = dg.materialize(everything(resources), selection=selection, partition_key="color", resources=resources)
    return folder / "store", result


def test_a_grpo_checkpoint_is_published_under_its_own_name_and_benchmarked(grpo_run, tiny_vlm_dir):
    from vlm_rl_assets.model.train_result import read_result
    from vlm_rl_assets.store import schemas
    from vlm_rl_assets.store.local import LocalStore

    root, result = grpo_run
    assert result.success
    store = LocalStore(root)
    checkpoint = store.local_checkpoint("grpo_checkpoint", "color")
    assert read_result(checkpoint).steps == 2 and (checkpoint / "config.json").is_file()
    assert (checkpoint / "model.safetensors").read_bytes() != (tiny_vlm_dir / "model.safetensors").read_bytes()
    scores = store.read_table("benchmark_scores", "color", schemas.BENCHMARK_SCORES)
    assert set(scores["model"]) == {"base", "grpo"} and (scores["n"] == 8).all()  # named by what trained it
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "grpo_checkpoint"
    ]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["algorithm"] == "grpo" and meta["steps"] == 2 and meta["num_generations"] == 2
    assert meta["completions_judged"] == 2 * 2 * 2 and meta["judge_failures"] == 0  # steps x prompts x generations
    assert meta["prompts"] == 12 and meta["prompts_per_category"] == {"color": 12}
    assert meta["cost/generated_tokens"] > 0 and meta["cost/trained_tokens"] > 0  # GRPO samples inside its trainer
    assert {"final/reward", "final/reward_std", "final/completions/mean_length"} <= set(meta)
    assert meta["curves"].startswith("![training curves](data:image/png;base64,")
    assert store.read_table("quarantine", "grpo_checkpoint_rewards/color", schemas.QUARANTINE).height == 0
    assert list((root.parent / "work" / "grpo_checkpoint" / "color").iterdir()) == []  # published: its run folder went
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "training_health"]
    assert isinstance(check.passed, bool) and {"alarms", "zero_std_share", "kl_max", "truncated_share"} <= set(
        check.metadata
    )


def test_the_policy_trains_by_grpo_on_the_mixture_each_category_rewarded_by_its_judge(grpo_run):
    from vlm_rl_assets.orchestration.resources import PipelineResource
    from vlm_rl_assets.store.local import LocalStore
    from vlm_rl_assets_tests.graphs import everything

    root, _ = grpo_run
    resources = {"pipeline": PipelineResource.from_file(str(root.parent / "pipeline.yaml"), str(root))}
    assert dg.materialize(
        everything(resources), selection=["prompt_mixture"], partition_key="count", resources=resources
    ).success
    result = dg.materialize(everything(resources), selection=["policy_checkpoint"], resources=resources)
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["algorithm"] == "grpo" and meta["prompts_per_category"] == {"color": 12, "count": 12}
    assert (LocalStore(root).local_checkpoint("policy_checkpoint", "mixture") / "config.json").is_file()
    [check] = result.get_asset_check_evaluations()
    assert {"reward_last/color", "reward_last/count"} <= set(check.metadata)  # TRL's rewards/<category>/mean


def test_grpo_takes_lora_and_the_frozen_vision_tower_as_dpo_does(tiny_vlm_dir):
    from vlm_rl_assets.grpo.training import RLPrompt, grpo_trainer
    from vlm_rl_assets.training.policy import vision_tower

    prompts = [RLPrompt("p0", pair.prompt_text, pair.images) for pair in colour_pairs(1, seed=0)]
    settings = TrainingSettings(lora={"r": 4}, freeze_vision_tower=True)
    rewards = [lambda **_: [0.0, 1.0]]
    trainer = grpo_trainer(
        tiny_vlm_dir, tiny_vlm_dir.parent / "grpo_lora", prompts, rewards, settings, GRPOSettings(num_generations=2)
    )
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert not any(p.requires_grad for p in vision_tower(trainer.model).parameters())
    assert trainer.ref_model is None  # the KL reference is the model with its adapters off: no copy held


def test_a_judge_failing_above_max_bad_fraction_fails_the_run_and_publishes_nothing(
    tiny_vlm_dir, tmp_path, monkeypatch
):
    from vlm_rl_assets.orchestration import grpo_run
    from vlm_rl_assets.store import schemas
    from vlm_rl_assets.store.local import LocalStore
    from vlm_rl_assets_tests.graphs import everything

    monkeypatch.setattr(grpo_run, "open_judge", lambda *args: EveryThirdFails())  # 1/3 > max_bad_fraction 0.1
    resources = grpo_config(tmp_path, tiny_vlm_dir)
    result = dg.materialize(
        everything(resources),
        selection=["prompt_mixture", "grpo_checkpoint"],
        partition_key="color",
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "the judges failed on 4 of 8 GRPO completions ({'timeout': 4}), above max_bad_fraction=0.1" in str(
        failure.event_specific_data.error
    )
    store = LocalStore(tmp_path / "store")
    assert not store.has_checkpoint("grpo_checkpoint", "color")
    quarantined = store.read_table("quarantine", "grpo_checkpoint_rewards/color", schemas.QUARANTINE)
    assert quarantined.height == 4 and set(quarantined["reason"]) == {"timeout: no reply in 60 s"}
    assert list((tmp_path / "work" / "grpo_checkpoint" / "color").iterdir()) == []  # a rerun trains afresh
