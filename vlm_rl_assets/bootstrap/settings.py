"""The embedded base model's SFT: how long and how hard it trains, and where it stops (imperfect on purpose)."""

from pydantic import Field

from vlm_rl_assets.settings import Settings


class SFTSettings(Settings):
    max_steps: int = Field(600, ge=1, description="upper bound; the held-out check usually stops training earlier")
    batch_size: int = Field(32, ge=1, description="examples per optimizer step")
    learning_rate: float = Field(
        2e-3, gt=0, description="constant, no warmup: what made the tiny VLM learn on CPU (STACK.md)"
    )
    seed: int = Field(0, description="seeds the data order and the tiny model's initial weights")
    eval_every: int = Field(25, ge=1, description="steps between held-out checks (early stop)")
    log_every: int | None = Field(None, ge=1, description="steps between log entries (the last is always logged); null: eval_every")

    @property
    def logging_steps(self) -> int:
        return self.log_every or self.eval_every


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
    min_category_accuracy: float = Field(
        0.25,
        ge=0,
        le=1,
        description="stop once every category's greedy dev accuracy reaches this (every category SFT-trained: "
        "synthetic ones and datasets that gave bootstrap rows; one that stays below runs training to max_steps, "
        "unless the mean ceiling stops it first)",
    )
    max_mean_accuracy: float = Field(0.6, gt=0, le=1, description="or once the mean reaches this (headroom for DPO)")
    short_answer_share: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="share of each chain-of-thought category's SFT examples also asked plainly with a short answer, "
        "so the base follows both instruction styles as instruct models do (the answer_format experiment needs it)",
    )

    def examples_for(self, category: str) -> int:
        """How many SFT examples `category` gets (a dataset category: at most, in file order)."""
        return self.examples_override.get(category, self.examples_per_category)


class SyntheticCategory(Settings):
    """A category the embedded base is SFT-trained on: its `prompts/world.py` task and prompt template."""

    task: str
    template: str
