"""The health record of a training run, DPO or GRPO, and what both algorithms' alarms read from TRL's log history
(dpo/health.py, grpo/health.py): each alarm names its numbers and its fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Health:
    alarms: list[str] = field(default_factory=list)
    metrics: dict[str, float | int | None] = field(default_factory=dict)  # the numbers behind the alarms


def finite_loss(logged: Sequence[dict[str, float]], health: Health) -> None:
    if any(not math.isfinite(entry["loss"]) for entry in logged):
        health.alarms.append("the loss became non-finite: lower training.learning_rate")


def series(logged: Sequence[dict[str, float]], key: str) -> list[tuple[float, float]]:
    """(step, value) of `key` over the logged entries that have a value (TRL logs None for a metric with none, e.g. a
    reward no completion got), steps counted from 1 when the history lacks them."""
    return [(entry.get("step", i + 1), entry[key]) for i, entry in enumerate(logged) if entry.get(key) is not None]
