"""What a training run takes whichever algorithm trains it (`training:` but the algorithm's own fields): the run
itself, LoRA, the vision tower, its processes and checkpoints, the policy's mixture; and when its health check alarms
(`training_health:`). DPO's loss is `dpo/settings.py`'s `DPOSettings`, GRPO's own `grpo/settings.py`'s
`GRPOSettings`; `config.py` composes the three into the `training:` section."""

from typing import Literal

from pydantic import Field, model_validator

from vlm_rl_assets.settings import Settings

Sharding = Literal["none", "fsdp2", "zero3"]


class LoRASettings(Settings):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights before the checkpoint is saved."""

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: float = Field(32, gt=0, description="the adapter's update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] | Literal["all-linear"] = Field(
        "all-linear",
        description="module names to adapt (e.g. [q_proj, v_proj]), or all-linear: every linear but the LM head",
    )


class MixtureSettings(Settings):
    """How the release candidate (`policy_checkpoint`) trains by DPO on every category's pairs at once: how they are
    balanced (training/mixture.py) and the passes and learning rate of that run, where they differ from training's."""

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


class TrainingSettings(Settings):
    """One training run, DPO or GRPO. Beta is not here: each DPO pair carries its category's own (the `beta` column
    of judged_pairs); GRPO's KL beta is `grpo.beta`."""

    learning_rate: float = Field(
        2e-5,
        gt=0,
        description="lr >= 1e-4 at beta 0.1 collapsed an earlier model's answer format (the policy's mixture, at "
        "betas 0.2-0.5, trains at 1e-4: mixture.learning_rate)",
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
    sharding: Sharding = Field(
        "none",
        description="none: every process holds the whole model (DDP); fsdp2 or zero3: weights, gradients and "
        "optimizer states split over the num_processes GPUs (accelerate's FSDP2 / DeepSpeed ZeRO-3 plugins; GPUs "
        "only, accelerate does not shard on CPU)",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="keep only each layer's input for the backward pass and recompute the rest: activations shrink "
        "to about one layer's, a step takes ~30% longer (off: a tiny model only gets slower)",
    )

    @model_validator(mode="after")
    def batch_splits_over_processes(self) -> "TrainingSettings":
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
