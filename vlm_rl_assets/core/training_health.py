"""Alarms on a DPO run's logged curves: the failure modes seen on this stack, named with their fix."""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_CHOSEN_LOGP_DROP = 5.0  # nats; beyond this the answer format collapsed in STACK.md's runs (lr too high)


def training_alarms(history: Sequence[dict[str, float]]) -> list[str]:
    """What went wrong in a run from its TRL log history (entries with a `loss`); empty when healthy."""
    logged = [entry for entry in history if "loss" in entry]
    alarms = []
    if any(not math.isfinite(entry["loss"]) for entry in logged):
        alarms.append("the loss became non-finite: lower training.learning_rate")
    chosen = [entry["logps/chosen"] for entry in logged if "logps/chosen" in entry]
    if chosen and chosen[0] - min(chosen) > MAX_CHOSEN_LOGP_DROP:
        alarms.append(
            f"logps/chosen fell {chosen[0] - min(chosen):.1f} nats ({chosen[0]:.2f} -> {min(chosen):.2f}), more than "
            f"{MAX_CHOSEN_LOGP_DROP:g}: the policy is unlearning its chosen answers (format collapse); lower "
            "training.learning_rate, raise the category's beta, or add an sft term (training.loss_type: [sigmoid, sft])"
        )
    return alarms
