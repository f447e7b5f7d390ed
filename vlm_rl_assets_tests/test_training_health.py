"""Training-health alarms fire on the collapse STACK.md measured, and stay quiet on a healthy run."""

from vlm_rl_assets.core.training_health import training_alarms


def _history(chosen: list[float], loss: float = 0.6) -> list[dict[str, float]]:
    return [{"step": i + 1, "loss": loss, "logps/chosen": c} for i, c in enumerate(chosen)] + [{"train_runtime": 1.0}]


def test_healthy_run_has_no_alarms() -> None:
    assert training_alarms(_history([-2.4, -2.2, -2.6])) == []


def test_collapsing_chosen_logps_and_nan_loss_are_named_with_the_fix() -> None:
    (alarm,) = training_alarms(_history([-2.4, -9.0, -18.0]))
    assert "fell 15.6 nats" in alarm and "lower training.learning_rate" in alarm
    assert training_alarms(_history([-2.4], loss=float("nan"))) == ["the loss became non-finite: lower training.learning_rate"]
