"""What a finished training run reports, and the file beside its weights that keeps it (how a launched run reports
back, and how a checkpoint says what produced it). Light to import: no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vlm_rl_assets import metering

METRICS_FILE = "training_metrics.json"  # beside the weights: what produced this checkpoint


@dataclass
class TrainResult:
    steps: int  # optimizer steps taken
    history: list[dict[str, float]]  # TRL's log_history (the last entry is the run summary, train_runtime etc.)
    final: dict[str, float]  # last logged value of each watched metric
    resumed_from: int = 0  # the checkpoint step this run resumed from; 0: it started fresh
    input_tokens: int = 0  # non-padding tokens of every step's inputs, all processes (steps before a resume included)
    examples: int = 0  # examples trained, times their epochs (a partial epoch counted in part)

    def count_cost(self) -> TrainResult:
        """Add this run's trained tokens and examples to the process's counts (`metering.py`); called once, by the
        process that started the run (a launched run's workers are other processes)."""
        metering.count(metering.TRAINED_TOKENS, self.input_tokens)
        metering.count(metering.TRAIN_EXAMPLES, self.examples)
        return self


def read_result(out_dir: str | Path) -> TrainResult:
    """The TrainResult a finished run wrote beside its weights (how a launched run reports back)."""
    return TrainResult(**json.loads((Path(out_dir) / METRICS_FILE).read_text()))
