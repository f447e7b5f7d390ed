"""How many on-policy rounds run, what each round's DPO is anchored to, and when the rounds stop early."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vlm_rl_assets.settings import Settings


class RoundsSettings(Settings):
    count: int = Field(
        1, ge=1, le=20, description="rounds; round r samples its rollouts from round r-1's mixture policy (1: the base)"
    )
    reference: Literal["previous_round", "base"] = Field(
        "previous_round",
        description="DPO's reference in round r: the policy it starts from (round r-1's), or the base model",
    )
    min_gain: float = Field(
        0.5,
        description="round r+1 runs only when round r gained at least this many points of mean dev accuracy over the "
        "policy it started from (and its release report passed the promotion gate)",
    )

    stop_early: bool = Field(
        True, description="false: every round runs whatever the last one gained (to compare round counts)"
    )

    @model_validator(mode="before")
    @classmethod
    def count_alone(cls, value: object) -> object:
        """`rounds: 2` is short for `rounds: {count: 2}`."""
        return {"count": value} if isinstance(value, int) else value
