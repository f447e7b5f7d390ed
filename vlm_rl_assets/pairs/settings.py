"""How a group's judged rollouts become DPO pairs."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vlm_rl_assets.settings import Settings


class PairingSettings(Settings):
    min_margin: float = Field(
        0.5, le=1, description="chosen score minus rejected score, at least; > 0 so chosen always scores higher"
    )
    max_pairs_per_prompt: int = Field(1, ge=1)
    max_length_ratio: float | None = Field(
        None, ge=1, description="length-balanced: drop pairs whose longer half has more than this many times the words"
    )
    chosen_source: Literal["policy", "ground_truth"] = Field(
        "policy", description="ground_truth: the prompt's reference as chosen (off-policy); only with ablation: true"
    )
    ablation: bool = Field(False, description="allow chosen_source: ground_truth, knowing it saturates DPO")

    @field_validator("min_margin")
    @classmethod
    def margin_is_positive(cls, margin: float) -> float:
        if margin <= 0:
            raise ValueError(
                f"{margin} lets a pair's halves score the same (DPO then pushes apart two answers the judge rates "
                "equal); set pairing.min_margin above 0, to the smallest score difference that makes one answer "
                "better (0.5 by default)"
            )
        return margin

    @model_validator(mode="after")
    def ground_truth_only_as_ablation(self) -> "PairingSettings":
        if self.chosen_source == "ground_truth" and not self.ablation:
            raise ValueError(
                "chosen_source: ground_truth makes the reference answer 'chosen': DPO then tells off-policy text from "
                "the policy's own at once, its loss saturates and the policy learns a style shortcut instead of being "
                "right. Keep chosen_source: policy, or set pairing.ablation: true to run it as an ablation"
            )
        return self
