"""DPO's own settings: its loss (`training.loss_type`, `training.loss_weights`, or a category's `loss:`). The rest of
a DPO run's settings are training's (`training/settings.py`)."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vlm_rl_assets.settings import Settings

LossType = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]  # TRL 1.16's DPO loss types
SORTED_LOSS_TYPES = frozenset({"aot", "aot_unpaired"})
ONE_BETA_WHY = (
    "loss_type aot and aot_unpaired sort the batch's log-ratios before taking differences, so a sorted position "
    "belongs to no one pair and cannot take a pair's own beta: they train only pairs that share one beta"
)


class DPOSettings(Settings):
    """TRL loss types summed with weights: [sigmoid] is DPO; [sigmoid, bco_pair, sft] with [0.8, 0.2, 1.0] is MPO."""

    loss_type: tuple[LossType, ...] = Field(("sigmoid",), min_length=1)
    loss_weights: tuple[float, ...] | None = Field(None, description="one per loss_type; unset weighs each 1.0")

    @field_validator("loss_type", mode="before")
    @classmethod
    def one_name_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def one_weight_per_type(self) -> "DPOSettings":
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} entries for {len(self.loss_type)} loss_type entries "
                f"{list(self.loss_type)}: give one weight per type, or drop loss_weights"
            )
        return self
