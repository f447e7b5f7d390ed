"""Training-health alarms fire on each failure mode, with its numbers and fix, and stay quiet on a healthy run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from vlm_rl_assets.config import load_config
from vlm_rl_assets.dpo.health import Lengths, probe_lengths, training_health
from vlm_rl_assets.orchestration.training_run import health_check
from vlm_rl_assets.rollouts.engine import SamplingParams
from vlm_rl_assets.rollouts.open import open_engine
from vlm_rl_assets.training.settings import HealthSettings

HEALTHY_CHOSEN = [-40.0, -39.6, -40.3, -39.8, -40.1, -39.5, -40.0, -39.9, -40.2, -39.7]  # flat with noise
HEALTHY_ACCURACY = [0.55, 0.62, 0.70, 0.74, 0.80, 0.83, 0.85, 0.88, 0.90, 0.91]  # learns gradually
BALANCED = Lengths(chosen_words=12.0, rejected_words=11.5, base_tokens=20.0, policy_tokens=21.0)


def _history(
    chosen: list[float] = HEALTHY_CHOSEN, accuracy: list[float] = HEALTHY_ACCURACY, loss: float = 0.6, every: int = 5
) -> list[dict[str, float]]:
    """TRL's log history of a run logged every `every` steps, then its summary entry."""
    return [
        {"step": (i + 1) * every, "loss": loss, "logps/chosen": c, "rewards/accuracies": a}
        for i, (c, a) in enumerate(zip(chosen, accuracy))
    ] + [{"train_runtime": 1.0}]


def test_healthy_run_has_no_alarms_and_reports_its_numbers() -> None:
    health = training_health(_history(), lengths=BALANCED)
    assert health.alarms == []
    assert health.metrics["saturation_step"] is None
    assert abs(health.metrics["chosen_logps_slope"]) < 0.01
    assert health.metrics["length_drift"] == pytest.approx(0.05)


def test_saturation_within_the_first_tenth_of_steps() -> None:
    accuracy = [0.99] + [1.0] * 9  # first logged at step 5 of 50: off-policy chosen answers tell apart at once
    (alarm,) = training_health(_history(accuracy=accuracy)).alarms
    assert "by step 5 of 50" in alarm and "pairing.chosen_source: policy" in alarm
    assert training_health(_history(accuracy=accuracy)).metrics["saturation_step"] == 5


def test_saturation_late_in_the_run_is_learning_not_an_alarm() -> None:
    accuracy = HEALTHY_ACCURACY[:5] + [0.98, 0.99, 1.0, 1.0, 1.0]  # reached at step 30 of 50
    health = training_health(_history(accuracy=accuracy))
    assert health.alarms == [] and health.metrics["saturation_step"] == 30


@pytest.mark.parametrize("first_saturated, alarms", [(3, 1), (4, 0)])
def test_window_is_a_share_of_a_long_run(first_saturated: int, alarms: int) -> None:
    """Logged every 10 steps for 300: saturated at step 30 is within the first 10%, at step 40 it is not."""
    accuracy = [0.6] * (first_saturated - 1) + [0.99] * (31 - first_saturated)
    health = training_health(_history(chosen=[-40.0] * 30, accuracy=accuracy, every=10))
    assert len(health.alarms) == alarms and health.metrics["saturation_step"] == 10 * first_saturated


def test_steady_fall_of_chosen_logps_below_the_big_drop() -> None:
    chosen = [-40.0 - 0.3 * i + (0.5 if i == 4 else 0.0) for i in range(10)]  # -2.7 nats in all, one uptick
    health = training_health(_history(chosen=chosen))
    (alarm,) = health.alarms
    assert "falls steadily" in alarm and "89% of consecutive differences negative" in alarm
    assert health.metrics["chosen_logps_slope"] == pytest.approx(-0.06, abs=0.005)
    assert "training.loss_type: [sigmoid, sft]" in alarm


def test_a_slope_without_a_consistent_fall_is_not_a_trend() -> None:
    chosen = [-40.0, -40.5, -39.8, -41.5, -40.2, -42.0, -40.6, -42.5, -41.0, -43.0]  # slope < 0 but zig-zags
    health = training_health(_history(chosen=chosen))
    assert health.metrics["chosen_logps_slope"] < HealthSettings().chosen_logps_slope
    assert health.alarms == []


def test_too_few_points_make_no_trend() -> None:
    assert "chosen_logps_slope" not in training_health(_history(chosen=[-40.0, -41.0, -42.0])).metrics


def test_pairs_never_told_apart_are_named_with_the_mixture_fix() -> None:
    flat = [0.50, 0.62, 0.48, 0.55, 0.50, 0.57, 0.50, 0.50, 0.62, 0.50]  # chance throughout: what scene showed
    health = training_health(_history(accuracy=flat))
    assert health.metrics["late_reward_accuracy"] == pytest.approx(0.538, abs=1e-3)
    assert any("averaged 0.54 over the second half" in a and "mixture_weight: 0" in a for a in health.alarms)
    assert not any("over the second half" in a for a in training_health(_history()).alarms)  # learned late: fine


def test_big_drop_and_nan_loss_are_named_with_the_fix() -> None:
    chosen = [-2.4, -9.0, -18.0]
    (alarm,) = training_health(_history(chosen=chosen, accuracy=[0.7] * 3)).alarms
    assert "fell 15.6 nats" in alarm and "lower training.learning_rate" in alarm
    nan = training_health(_history(chosen=[-2.4], accuracy=[0.5], loss=float("nan"))).alarms
    assert nan == ["the loss became non-finite: lower training.learning_rate"]


@pytest.mark.parametrize("policy_tokens, sign", [(30.0, "+50%"), (12.0, "-40%")])
def test_length_drift_either_way(policy_tokens: float, sign: str) -> None:
    lengths = Lengths(chosen_words=18.0, rejected_words=9.0, base_tokens=20.0, policy_tokens=policy_tokens)
    (alarm,) = training_health(_history(), lengths=lengths).alarms
    assert f"drifted {sign} (20.0 -> {policy_tokens:.1f} tokens" in alarm
    assert "chosen halves average 18.0 words, rejected 9.0" in alarm and "pairing.max_length_ratio" in alarm


def test_thresholds_come_from_config() -> None:
    loose = HealthSettings(max_length_drift=0.6)
    assert training_health(_history(), loose, Lengths(18.0, 9.0, 20.0, 30.0)).alarms == []


def test_check_result_is_a_warning_with_the_numbers_in_metadata() -> None:
    context = dg.build_asset_context()
    lengths = Lengths(18.0, 9.0, 20.0, 30.0)
    health = training_health(_history(accuracy=[1.0] * 10), load_config().training_health, lengths)
    result = health_check(context, health, "dpo_checkpoint[color]")
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert len(result.metadata["alarms"].value) == 2
    assert result.metadata["saturation_step"].value == 5
    assert result.metadata["length_drift"].value == pytest.approx(0.5)
    assert "chosen_logps_slope" in result.metadata


def test_length_probe_measures_base_and_trained_model(tiny_vlm_dir: Path) -> None:
    image = Image.new("RGB", (56, 56), "red")
    pairs = pl.DataFrame(
        {
            "prompt_id": ["b", "a", "a"],
            "prompt_text": ["What colour?", "What shape?", "What shape?"],
            "chosen": ["Answer: red", "Answer: a round circle", "Answer: circle"],
            "rejected": ["Answer: blue", "Answer: square", "Answer: square"],
        }
    )
    config = load_config()
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=config.engine.max_new_tokens)
    engine = lambda model: open_engine(config.engine, config.model, model)  # noqa: E731
    lengths = probe_lengths(pairs, [(image,)] * 3, tiny_vlm_dir, tiny_vlm_dir, engine, 2, greedy)
    assert lengths.chosen_words == pytest.approx(8 / 3) and lengths.rejected_words == 2.0
    assert lengths.base_tokens == lengths.policy_tokens > 0 and lengths.drift == 0.0  # same model: greedy, no drift
