"""GRPO's own settings (`training.grpo:`). The rest of a GRPO run's settings are training's (`training/settings.py`)."""

from typing import Literal

from pydantic import Field

from vlm_rl_assets.settings import Settings

GRPOLossType = Literal["dapo", "grpo", "dr_grpo", "bnpo"]  # TRL 1.16's GRPO losses that log clip_ratio and need no more


class GRPOSettings(Settings):
    """Online GRPO (TRL's GRPOTrainer): each step samples a group of completions per train prompt from the policy
    being trained, scores them with the category's judge and moves towards the better ones of each group."""

    num_generations: int = Field(8, ge=2, description="completions sampled per prompt and step: the group compared")
    prompts_per_step: int = Field(
        4,
        ge=1,
        description="prompts per optimizer step; a step trains on prompts_per_step * num_generations completions",
    )
    max_completion_length: int = Field(
        256, ge=1, description="tokens per completion; longer ones are cut (truncated_share)"
    )
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the completions")
    beta: float = Field(
        0.04, ge=0, description="KL penalty towards the base model; 0 loads no reference copy and logs no kl"
    )
    loss_type: GRPOLossType = Field(
        "dapo", description="TRL's token aggregation: dapo (its default), grpo, dr_grpo, bnpo"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the group's reward std, the batch's, or not at all (Dr. GRPO)"
    )
    epsilon: float = Field(0.2, gt=0, lt=1, description="the policy ratio is clipped to [1 - epsilon, 1 + epsilon]")
