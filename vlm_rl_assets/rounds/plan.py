"""Whether round r may start, and from which model: round 1 from the base, round r > 1 from round r-1's policy,
once round r-1's outcome (its dev gain and its promotion gate) says the rounds go on.

The rule lives here, not in Dagster's graph: an asset graph is acyclic, and "round r samples from round r-1's
policy" is an edge from the end of the graph back to its start. The assets check it when they run; the sensor
that launches round r+1 reads the same outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from vlm_rl_assets.names import POLICY_CHECKPOINT, POLICY_KEY, ROUND_GAIN
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError, Store, round_key

TABLE = "rounds"  # rounds/round<r>: that round's outcome


class RoundsStopped(RuntimeError):
    """A round asked to run after the stop rule ended the rounds."""


@dataclass(frozen=True)
class RoundOutcome:
    pipeline_round: int
    dev_gain: float  # points of mean dev accuracy over the model the round started from
    dev_gain_ci: tuple[float, float]
    min_gain: float
    gate_problems: tuple[str, ...]

    def stop_reason(self) -> str | None:
        """Why no round follows this one (None: the next round may run)."""
        if self.gate_problems:
            return f"round {self.pipeline_round}'s policy failed the promotion gate: {'; '.join(self.gate_problems)}"
        if self.dev_gain < self.min_gain:
            return (
                f"round {self.pipeline_round} gained {self.dev_gain:+.1f} points on dev, below rounds.min_gain "
                f"{self.min_gain:g}"
            )
        return None

    def row(self) -> pl.DataFrame:
        low, high = self.dev_gain_ci
        row = {
            "round": self.pipeline_round,
            "dev_gain": self.dev_gain,
            "dev_gain_ci_low": low,
            "dev_gain_ci_high": high,
            "min_gain": self.min_gain,
            "gate_problems": [list(self.gate_problems)],
        }
        return pl.DataFrame(row, schema=schemas.ROUND_OUTCOMES)


def outcome_key(pipeline_round: int) -> str:
    return f"round{pipeline_round}"


def write_outcome(store: Store, outcome: RoundOutcome) -> str:
    return store.write_table(TABLE, outcome_key(outcome.pipeline_round), outcome.row(), schemas.ROUND_OUTCOMES)


def read_outcome(store: Store, pipeline_round: int) -> RoundOutcome | None:
    """Round `pipeline_round`'s stored outcome; None before its round_gain ran."""
    if not store.has_table(TABLE, outcome_key(pipeline_round)):
        return None
    row = store.read_table(TABLE, outcome_key(pipeline_round), schemas.ROUND_OUTCOMES).row(0, named=True)
    return RoundOutcome(
        row["round"],
        row["dev_gain"],
        (row["dev_gain_ci_low"], row["dev_gain_ci_high"]),
        row["min_gain"],
        tuple(row["gate_problems"]),
    )


def latest_policy(store: Store, rounds: int) -> Path:
    """The newest round's policy checkpoint among `rounds` (round 1's when none later exists)."""
    for pipeline_round in range(rounds, 1, -1):
        if store.has_checkpoint(POLICY_CHECKPOINT, round_key(POLICY_KEY, pipeline_round)):
            return store.local_checkpoint(POLICY_CHECKPOINT, round_key(POLICY_KEY, pipeline_round))
    return store.local_checkpoint(POLICY_CHECKPOINT, POLICY_KEY)


def start_model(store: Store, base_dir: Path, pipeline_round: int, stop_early: bool = True) -> Path:
    """The model round `pipeline_round` samples from and trains on: the base for round 1, else the policy checkpoint
    of the round before, once that round's outcome is known and (with `stop_early`) lets the rounds go on."""
    if pipeline_round == 1:
        return base_dir
    previous = pipeline_round - 1
    outcome = read_outcome(store, previous)
    if outcome is None:
        raise MissingUpstreamError(
            f"round {pipeline_round} starts from round {previous}'s policy once round {previous}'s outcome is known; "
            f"materialize policy_checkpoint, release_report and round_gain for round {previous} first.",
            ROUND_GAIN,
            round_key(POLICY_KEY, previous),
        )
    if stop_early and (reason := outcome.stop_reason()) is not None:
        raise RoundsStopped(f"round {pipeline_round} does not run: {reason}")
    return store.local_checkpoint(POLICY_CHECKPOINT, round_key(POLICY_KEY, previous))
