"""Training's settings (`training:`): DPO on judged pairs by default, or online GRPO (`algorithm: grpo`, the `grpo:`
block, trained by the grpo package); the loss, LoRA, the run itself, and when its health check alarms."""

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
Algorithm = Literal["dpo", "grpo"]
GRPOLossType = Literal["dapo", "grpo", "dr_grpo", "bnpo"]  # TRL 1.16's GRPO losses that log clip_ratio and need no more
ONE_BETA_WHY = (
    "loss_type aot and aot_unpaired sort the batch's log-ratios before taking differences, so a sorted position "
    "belongs to no one pair and cannot take a pair's own beta: they train only pairs that share one beta"
)


class LossSettings(Settings):
    """TRL loss types summed with weights: [sigmoid] is DPO; [sigmoid, bco_pair, sft] with [0.8, 0.2, 1.0] is MPO."""

    loss_type: tuple[LossType, ...] = Field(("sigmoid",), min_length=1)
    loss_weights: tuple[float, ...] | None = Field(None, description="one per loss_type; unset weighs each 1.0")

    @field_validator("loss_type", mode="before")
    @classmethod
    def one_name_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def one_weight_per_type(self) -> "LossSettings":
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} entries for {len(self.loss_type)} loss_type entries "
                f"{list(self.loss_type)}: give one weight per type, or drop loss_weights"
            )
        return self


class LoRASettings(Settings):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights before the checkpoint is saved."""

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: float = Field(32, gt=0, description="the adapter's update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] | Literal["all-linear"] = Field(
        "all-linear",
        description="module names to adapt (e.g. [q_proj, v_proj]), or all-linear: every linear but the LM head",
    )


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


class MixtureSettings(Settings):
    """How the release candidate (`policy_checkpoint`) trains by DPO on every category's pairs at once: how they are
    balanced (dpo/mixture.py) and the passes and learning rate of that run, where they differ from training's."""

    max_repeat: float = Field(
        8.0,
        ge=1,
        description="a scarce category's pairs (GRPO: prompts) repeat up to this many times to match the "
        "richest category; beyond it the richer ones are sampled down",
    )
    epochs: int | None = Field(None, ge=1, description="passes over the balanced mixture; null: training.epochs")
    learning_rate: float | None = Field(None, gt=0, description="null: training.learning_rate")

    def overrides(self) -> dict[str, float]:
        """What the mixture's run changes in training's settings."""
        return {k: v for k, v in (("epochs", self.epochs), ("learning_rate", self.learning_rate)) if v is not None}


class DPOSettings(LossSettings):
    """One training run. Beta is not here: each pair carries its category's own (the `beta` column of judged_pairs);
    GRPO's KL beta is `grpo.beta`."""

    algorithm: Algorithm = Field(
        "dpo", description="dpo: offline, on judged_pairs; grpo: online, sampling and judging during training (grpo:)"
    )
    grpo: GRPOSettings = Field(GRPOSettings(), description="read only with algorithm: grpo")

    learning_rate: float = Field(
        2e-5, gt=0, description="lr >= 1e-4 at beta 0.1 collapsed the answer format (STACK.md)"
    )
    batch_size: int = Field(
        16, ge=1, description="pairs per optimizer step, over all processes (DPO; GRPO's is grpo.prompts_per_step)"
    )
    epochs: int = Field(2, ge=1, description="passes over the pairs (grpo: the train prompts), unless max_steps is set")
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    seed: int = Field(0, description="seeds the data order")
    mixture: MixtureSettings = Field(MixtureSettings(), description="the release candidate's run on all categories")
    log_every: int = Field(5, ge=1, description="steps between log entries; the last step is always logged")
    lora: LoRASettings | None = Field(
        None, description="train LoRA adapters instead of every weight; null: full fine-tuning"
    )
    freeze_vision_tower: bool = Field(
        False, description="keep the vision encoder (and its projector) as the base model has it; train the rest"
    )
    save_steps: int = Field(
        50,
        ge=1,
        description="steps between resumable Trainer checkpoints: a killed run (DPO or GRPO) loses at most these",
    )
    work_dir: str = Field(
        "",
        description="local folder of unfinished runs (DPO's job spec, Trainer checkpoints), removed once the checkpoint "
        "is published; empty: <storage cache>/training",
    )
    num_processes: int = Field(
        1,
        ge=1,
        description="data-parallel processes: 1 trains inside the asset; more run under `accelerate launch` "
        "(CPU: gloo; GPUs: NCCL, one process per GPU)",
    )

    @model_validator(mode="after")
    def settings_of_the_algorithm(self) -> "DPOSettings":
        """A grpo block without algorithm: grpo would train DPO unnoticed, and GRPO runs in one process. DPO's own
        settings (loss_type, batch_size, save_steps, ...) may stay under algorithm: grpo, unread, so one file serves
        both algorithms (an experiment's variant only sets training.algorithm and training.grpo)."""
        # compared with the defaults, not by presence: a dumped config (a DPO job, an experiment variant) lists them all
        if self.algorithm == "dpo" and self.grpo != GRPOSettings():
            raise ValueError("grpo settings are read only with algorithm: grpo; set algorithm: grpo or drop grpo")
        if self.algorithm == "grpo" and self.num_processes > 1:
            raise ValueError(
                f"algorithm: grpo trains in the asset's process (its sampling and judging are not spread over "
                f"processes here), so num_processes {self.num_processes} cannot be honoured; set num_processes: 1"
            )
        return self

    @model_validator(mode="after")
    def batch_splits_over_processes(self) -> "DPOSettings":
        if self.batch_size % self.num_processes:
            raise ValueError(
                f"batch_size {self.batch_size} does not split over num_processes {self.num_processes}: "
                "make batch_size a multiple of num_processes"
            )
        return self


class HealthSettings(Settings):
    """When the WARN-only `training_health` check on a training asset alarms (dpo/health.py; grpo/health.py)."""

    max_chosen_logp_drop: float = Field(
        5.0,
        gt=0,
        description="nats logps/chosen may fall below its first logged value (beyond it the format collapsed)",
    )
    saturation_accuracy: float = Field(0.98, gt=0, le=1, description="rewards/accuracies that counts as saturated...")
    saturation_window: float = Field(0.1, gt=0, le=1, description="...when reached within this share of the steps")
    chosen_logps_slope: float = Field(
        -0.02, description="nats/step: a least-squares slope of logps/chosen below this..."
    )
    falling_share: float = Field(
        0.75, gt=0, le=1, description="...with this share of logged steps falling is a steady fall"
    )
    min_trend_points: int = Field(4, ge=3, description="logged points needed to judge a trend")
    max_length_drift: float = Field(
        0.25,
        gt=0,
        description="alarm when the mean generated length changes by more (0.25: ±25%; DPO: greedy, base "
        "vs. trained; GRPO: sampled, first vs. last logged step)",
    )
    min_reward_accuracy: float = Field(
        0.6,
        ge=0,
        le=1,
        description="alarm when rewards/accuracies averages less over the second half of the run (pairs not learned)",
    )
    length_sample: int = Field(
        16,
        ge=0,
        description="training prompts generated greedily by base and trained model for the length drift; 0: off",
    )
    max_zero_std_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="GRPO: alarm when on average more groups than this got one reward for every "
        "completion (frac_reward_zero_std): no advantage, nothing to learn",
    )
    max_kl: float = Field(0.5, gt=0, description="GRPO: alarm when the per-token KL to the base model exceeds this")
    max_truncated_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="GRPO: alarm when more completions than this hit max_completion_length over the "
        "second half of the run",
    )
