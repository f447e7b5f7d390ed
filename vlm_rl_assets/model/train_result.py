"""What a finished training run reports, and the file beside its weights that keeps it (how a launched run reports
back, and how a checkpoint says what produced it). Light to import: no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

METRICS_FILE = "training_metrics.json"  # beside the weights: what produced this checkpoint


@dataclass
class TrainResult:
    steps: int  # optimizer steps taken
    history: list[dict[str, float]]  # TRL's log_history (the last entry is the run summary, train_runtime etc.)
    final: dict[str, float]  # last logged value of each watched metric
    resumed_from: int = 0  # the checkpoint step this run resumed from; 0: it started fresh


def read_result(out_dir: str | Path) -> TrainResult:
    """The TrainResult a finished run wrote beside its weights (how a launched run reports back)."""
    return TrainResult(**json.loads((Path(out_dir) / METRICS_FILE).read_text()))
