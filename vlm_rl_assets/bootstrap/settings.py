"""The embedded base model's SFT: how long and how hard it trains, and where it stops (imperfect on purpose)."""

import math
from collections.abc import Collection

from pydantic import Field, model_validator

from vlm_rl_assets.settings import Settings


class SFTSettings(Settings):
    max_steps: int = Field(600, ge=1, description="upper bound; the held-out check usually stops training earlier")
    batch_size: int = Field(32, ge=1, description="examples per optimizer step")
    learning_rate: float = Field(
        2e-3,
        gt=0,
        description="constant, no warmup: what made the tiny VLM learn on CPU (chance to 85% in 100 steps at batch 32)",
    )
    seed: int = Field(0, description="seeds the data order and the tiny model's initial weights")
    eval_every: int = Field(25, ge=1, description="steps between held-out checks (early stop)")
    log_every: int | None = Field(
        None, ge=1, description="steps between log entries (the last is always logged); null: eval_every"
    )

    @property
    def logging_steps(self) -> int:
        return self.log_every or self.eval_every

    @property
    def check_grid(self) -> int:
        """Steps between calls of the trainer's early-stop check (which may skip a call)."""
        return self.eval_every


class BootstrapSettings(SFTSettings):
    """SFT of the embedded tiny model to a deliberately imperfect level, so DPO has headroom."""

    examples_per_category: int = Field(
        2000, ge=1, description="SFT examples per category; a dataset category gives at most this many bootstrap rows"
    )
    examples_override: dict[str, int] = Field(
        default_factory=dict, description="per-category SFT example counts: fewer leave a category weaker"
    )
    dev_per_category: int = Field(
        50, ge=1, description="items for the early-stop check: the first of each category's dev split, never bench"
    )
    min_mean_accuracy: float = Field(
        0.45,
        ge=0,
        le=1,
        description="the low end of the band of mean greedy dev accuracy the base is stopped in (an imperfect but "
        "teachable base): SFT stops at the first check that reaches it with no category within noise of chance",
    )
    max_mean_accuracy: float = Field(
        0.55,
        gt=0,
        le=1,
        description="the band's high end: a stop above it is warned about (a category near chance kept training going, "
        "or the checks were too far apart for how fast this host learns): a stronger base leaves DPO less headroom",
    )
    eval_every_near: int = Field(
        50,
        ge=1,
        description="steps between dev checks once the mean is within near_band of the band: the stop lands inside it",
    )
    near_band: float = Field(
        0.15, ge=0, le=1, description="how far below the band the checks tighten to eval_every_near"
    )
    short_answer_share: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="share of each chain-of-thought category's SFT examples also asked plainly with a short answer, "
        "so the base follows both instruction styles as instruct models do (the answer_format experiment needs it)",
    )

    @model_validator(mode="after")
    def _band_is_ordered(self) -> "BootstrapSettings":
        if self.min_mean_accuracy > self.max_mean_accuracy:
            raise ValueError(
                f"min_mean_accuracy ({self.min_mean_accuracy}) must not exceed max_mean_accuracy ({self.max_mean_accuracy})"
            )
        return self

    @property
    def check_grid(self) -> int:
        return math.gcd(self.eval_every, self.eval_every_near)

    def next_check(self, step: int, best_mean: float | None) -> int:
        """The step of the next dev check after one at `step`, given the highest mean accuracy of the checks so far
        (None: no check yet): once near the band the checks stay tight, though a check's mean dips (100 items per
        category move it by several points)."""
        near = best_mean is not None and best_mean >= self.min_mean_accuracy - self.near_band
        return step + (self.eval_every_near if near else self.eval_every)

    def stops(self, mean: float, at_chance: Collection[str]) -> bool:
        """Whether a dev check ends SFT: its mean reached the band and no category (`at_chance` names them) is within
        noise of chance. One that is keeps training going, past the band if need be: the base is meant to learn every
        category, and DPO cannot lift one it has not."""
        return mean >= self.min_mean_accuracy and not at_chance

    def examples_for(self, category: str) -> int:
        """How many SFT examples `category` gets (a dataset category: at most, in file order)."""
        return self.examples_override.get(category, self.examples_per_category)


class SyntheticCategory(Settings):
    """A category the embedded base is SFT-trained on: its `prompts/world.py` task and prompt template."""

    task: str
    template: str
