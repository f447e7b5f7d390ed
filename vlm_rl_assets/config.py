"""The pipeline config: one YAML file, validated on load, errors naming the key and the fix.

The embedded default (`default_config.yaml`, bundled) runs on a laptop CPU; `VLM_RL_CONFIG` points
to a user's file. Only configuration differs between that and a 7B model on GPUs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from vlm_rl_assets.prompts.datasets import is_dataset_source, resolve
from vlm_rl_assets.judging.contract import JudgeKind
from vlm_rl_assets.dpo.health import HealthThresholds
from vlm_rl_assets.prompts.world import TASKS

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
CONFIG_ENV_VAR = "VLM_RL_CONFIG"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Strict):
    path: str = Field("embedded", description="SFT model folder (save_pretrained), or 'embedded' to build the tiny default")
    device: str = "cpu"
    torch_threads: int = Field(2, ge=1, description="intra-op threads on CPU")


class EngineConfig(Strict):
    kind: Literal["hf", "vllm"] = Field(
        "hf", description="hf: transformers generate, CPU or GPU; vllm: GPUs only, pip install '.[vllm]'"
    )
    batch_size: int = Field(64, ge=1, description="sequences per generate call")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split across")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm: GPU memory share for weights + KV cache")
    max_images_per_prompt: int = Field(1, ge=1, description="vllm: images per prompt it reserves memory for")
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    temperatures: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list, description="a sweep: each prompt's samples split across these (empty: just temperature)"
    )
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    shard_prompts: int = Field(256, ge=1, description="prompts per rollout shard, the unit a killed run resumes from")


class StorageConfig(Strict):
    root: str = Field(
        "data", description="folder or s3://bucket/prefix that holds every table, image and checkpoint"
    )
    cache_dir: str = Field(
        "", description="local copies of checkpoints read from an s3:// root; empty: ~/.cache/vlm_rl_assets"
    )


class BootstrapConfig(Strict):
    """SFT of the embedded tiny model to a deliberately imperfect level, so DPO has headroom."""

    examples_per_category: int = Field(2000, ge=1)
    examples_override: dict[str, int] = Field(
        default_factory=dict, description="per-category SFT example counts: fewer leave a category weaker"
    )
    dev_per_category: int = Field(50, ge=1, description="held-out items for the early-stop check")
    min_category_accuracy: float = Field(
        0.25, ge=0, le=1, description="stop once every category's greedy dev accuracy reaches this"
    )
    max_mean_accuracy: float = Field(0.6, gt=0, le=1, description="or once the mean reaches this (headroom for DPO)")
    short_answer_share: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="share of each chain-of-thought category's SFT examples also asked plainly with a short answer, "
        "so the base follows both instruction styles as instruct models do (the answer_format experiment needs it)",
    )
    max_steps: int = Field(600, ge=1)
    eval_every: int = Field(25, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    seed: int = 0


LossType = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]  # TRL 1.16's DPO loss types


class LossConfig(Strict):
    """TRL loss types summed with weights: [sigmoid] is DPO; [sigmoid, bco_pair, sft] with [0.8, 0.2, 1.0] is MPO."""

    loss_type: list[LossType] = Field(default_factory=lambda: ["sigmoid"], min_length=1)
    loss_weights: list[float] | None = Field(None, description="one per loss_type; unset weighs each 1.0")

    @field_validator("loss_type", mode="before")
    @classmethod
    def one_name_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def one_weight_per_type(self) -> LossConfig:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} entries for {len(self.loss_type)} loss_type entries "
                f"{self.loss_type}: give one weight per type, or drop loss_weights"
            )
        return self


class LoRAConfig(Strict):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights before the checkpoint is saved."""

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: float = Field(32, gt=0, description="the adapter's update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt (e.g. [q_proj, v_proj]), or all-linear: every linear but the LM head"
    )


class TrainingConfig(LossConfig):
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(16, ge=1, description="pairs per optimizer step, over all processes")
    epochs: int = Field(2, ge=1)
    seed: int = 0
    lora: LoRAConfig | None = Field(None, description="train LoRA adapters instead of every weight; null: full fine-tuning")
    freeze_vision_tower: bool = Field(
        False, description="keep the vision encoder (and its projector) as the base model has it; train the rest"
    )
    save_steps: int = Field(50, ge=1, description="steps between resumable Trainer checkpoints: a killed run loses at most these")
    work_dir: str = Field(
        "",
        description="local folder of unfinished runs (job spec, Trainer checkpoints), removed once the checkpoint is "
        "published; empty: <storage.cache_dir or ~/.cache/vlm_rl_assets>/training",
    )
    num_processes: int = Field(
        1, ge=1, description="data-parallel processes: 1 trains inside the asset; more run under `accelerate launch` "
        "(CPU: gloo; GPUs: NCCL, one process per GPU)"
    )

    @model_validator(mode="after")
    def batch_splits_over_processes(self) -> TrainingConfig:
        if self.batch_size % self.num_processes:
            raise ValueError(
                f"batch_size {self.batch_size} does not split over num_processes {self.num_processes}: "
                "make batch_size a multiple of num_processes"
            )
        return self


class EvalConfig(Strict):
    max_new_tokens: int = Field(48, ge=1)
    samples_per_prompt: int = Field(8, ge=1, description="sampled responses per bench prompt, for pass@k, k = 1..this")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the pass@k responses")
    max_category_loss: float = Field(0.01, ge=0, description="promotion gate: no category's accuracy may drop more")


class PairingConfig(Strict):
    min_margin: float = Field(0.5, ge=0, le=1, description="chosen score minus rejected score, at least")
    max_pairs_per_prompt: int = Field(1, ge=1)
    max_length_ratio: float | None = Field(
        None, ge=1, description="length-balanced: drop pairs whose longer half has more than this many times the words"
    )
    chosen_source: Literal["policy", "ground_truth"] = Field(
        "policy", description="ground_truth: the prompt's reference as chosen (off-policy); only with ablation: true"
    )
    ablation: bool = Field(False, description="allow chosen_source: ground_truth, knowing it saturates DPO")

    @model_validator(mode="after")
    def ground_truth_only_as_ablation(self) -> PairingConfig:
        if self.chosen_source == "ground_truth" and not self.ablation:
            raise ValueError(
                "chosen_source: ground_truth makes the reference answer 'chosen': DPO then tells off-policy text from "
                "the policy's own at once, its loss saturates and the policy learns a style shortcut instead of being "
                "right. Keep chosen_source: policy, or set pairing.ablation: true to run it as an ablation"
            )
        return self


class RuleJudgeConfig(Strict):
    rel_tol: float = Field(0.0, ge=0, description="number answers match within this relative tolerance...")
    abs_tol: float = Field(1e-6, ge=0, description="...or this absolute one")
    ocr_correct_at: float = Field(0.9, ge=0, le=1, description="ocr answers: normalized edit similarity that counts as right")


class VLMJudgeConfig(Strict):
    """A judge model behind an OpenAI-compatible endpoint, e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the server's OpenAI API root, ending in /v1")
    model: str = Field("", description="the served model name (required when a category uses judge: vlm)")
    api_key_env: str = Field(
        "VLM_JUDGE_API_KEY", description="environment variable holding the API key (unset: no key sent); never the key itself"
    )
    timeout_s: float = Field(60.0, gt=0, description="per request")
    max_retries: int = Field(3, ge=0, description="retries of a timeout, 429/5xx, empty or malformed reply, then quarantine")
    backoff_s: float = Field(1.0, ge=0, description="wait before retry i: backoff_s * 2**(i-1)")
    repeats: int = Field(2, ge=1, description="gradings per response, position-swapped; 2+ reports judge_consistency")
    agreement_tolerance: float = Field(0.1, ge=0, le=1, description="repeated scores this close agree")
    correct_at: float = Field(0.7, ge=0, le=1, description="score that counts as right for the right/wrong split")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(256, ge=16)
    concurrency: int = Field(8, ge=1, description="requests in flight (the server batches them)")
    json_mode: bool = Field(True, description="send response_format json_object; off for servers that reject it")


class RewardModelJudgeConfig(Strict):
    path: str = Field("", description="save_pretrained folder of a sequence-classification reward model (num_labels=1)")
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(4096, ge=1, description="longer prompt+response texts are quarantined, not truncated")
    correct_at: float = Field(0.5, ge=0, le=1, description="sigmoid score that counts as right")


class JudgesConfig(Strict):
    """Settings of the judges categories name with `judge:`."""

    rule: RuleJudgeConfig = RuleJudgeConfig()
    vlm: VLMJudgeConfig = VLMJudgeConfig()
    reward_model: RewardModelJudgeConfig = RewardModelJudgeConfig()


class CategoryConfig(Strict):
    source: str = Field(
        description="synthetic:<task>, or a .parquet / .jsonl dataset: a path (relative to this file's folder) or s3:// URI"
    )
    template: Literal["plain", "cot"] = Field(
        "plain", description="cot: chain of thought (choice, number, text, math answers) replacing short-answer instructions"
    )
    mcq_to_open: bool = Field(False, description="rewrite multiple choice as an open question answered by the option's text")
    min_response_words: int = Field(1, ge=1, description="shorter references and responses are dropped")
    samples_per_prompt: int = Field(8, ge=2, description="rollouts per prompt (a group)")
    n_train: int = Field(1000, ge=1, description="prompts to roll out (a dataset: its first n_train train rows)")
    n_bench: int = Field(200, ge=1, description="held-out benchmark prompts (a dataset: its first n_bench bench rows)")
    bench_fraction: float = Field(0.2, gt=0, lt=1, description="share of a dataset's rows without a split hashed into bench")
    beta: float = Field(0.1, gt=0, description="DPO beta; higher for long answers")
    loss: LossConfig | None = Field(
        None, description="this category's own DPO loss for dpo_checkpoint[c]; unset: training's (the mixture always uses training's)"
    )
    judge: JudgeKind = Field(
        "rule", description="rule | reference (CHAIR scene) | vlm | reward_model; settings under judges:"
    )
    mixture_weight: float = Field(1.0, ge=0, description="share in the policy's balanced mixture")
    min_group_diversity: float = Field(
        0.0, ge=0, le=1, description="groups whose unique fraction (distinct responses / samples) is lower are dropped"
    )
    calibration_labels: str | None = Field(
        None,
        description="labelled sample the judge must agree with before pairs are made: a .parquet/.jsonl path "
        "(prompt_id, label, and response or sample_idx), or 'references' (built-in sanity sample); see docs",
    )
    calibration_min_f1: float = Field(0.9, ge=0, le=1, description="below this F1 against the labels, judged_pairs is blocked")

    @field_validator("calibration_labels")
    @classmethod
    def labels_file_or_references(cls, labels: str | None) -> str | None:
        if labels is not None and labels != "references" and not labels.endswith((".parquet", ".jsonl", ".ndjson")):
            raise ValueError(f"calibration_labels {labels!r}: use a .parquet or .jsonl file, or 'references'")
        return labels

    @field_validator("source")
    @classmethod
    def known_source(cls, source: str, info: ValidationInfo) -> str:
        """A dataset path is made absolute against the config file's folder (`config_dir` in the context)."""
        if is_dataset_source(source):
            config_dir = (info.context or {}).get("config_dir")
            return resolve(source, str(config_dir)) if config_dir else source
        kind, _, task = source.partition(":")
        if kind != "synthetic" or task not in TASKS:
            raise ValueError(
                f"unknown source {source!r}; use 'synthetic:<task>' with task one of {sorted(TASKS)}, "
                "or a .parquet / .jsonl dataset (a path or s3:// URI)"
            )
        return source

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic:")

    @property
    def task(self) -> str:
        """The synthetic task (synthetic sources only)."""
        return self.source.partition(":")[2]


class TrainingHealthConfig(Strict):
    """When the WARN-only `training_health` check on a DPO checkpoint alarms (dpo/health.py)."""

    max_chosen_logp_drop: float = Field(
        HealthThresholds.max_chosen_logp_drop, gt=0, description="nats logps/chosen may fall below its first logged value"
    )
    saturation_accuracy: float = Field(
        HealthThresholds.saturation_accuracy, gt=0, le=1, description="rewards/accuracies that counts as saturated..."
    )
    saturation_window: float = Field(
        HealthThresholds.saturation_window, gt=0, le=1, description="...when reached within this share of the steps"
    )
    chosen_logps_slope: float = Field(
        HealthThresholds.chosen_logps_slope, description="nats/step: a least-squares slope of logps/chosen below this..."
    )
    falling_share: float = Field(
        HealthThresholds.falling_share, gt=0, le=1, description="...with this share of logged steps falling is a steady fall"
    )
    min_trend_points: int = Field(HealthThresholds.min_trend_points, ge=3, description="logged points needed to judge a trend")
    max_length_drift: float = Field(
        HealthThresholds.max_length_drift, gt=0, description="alarm when the mean greedy length changes by more (0.25: ±25%)"
    )
    min_reward_accuracy: float = Field(
        HealthThresholds.min_reward_accuracy, ge=0, le=1,
        description="alarm when rewards/accuracies averages less over the second half of the run (pairs not learned)",
    )
    length_sample: int = Field(
        16, ge=0, description="training prompts generated greedily by base and trained model for the length drift; 0: off"
    )


class ExternalEvalConfig(Strict):
    """Standard benchmarks by an external harness on base and policy: the `external_benchmarks` asset, for GPU
    deployments with the harness installed (evaluation/external_eval.py; README, "Standard benchmarks on GPU deployments")."""

    harness: Literal["none", "lmms_eval", "vlmevalkit"] = Field(
        "none",
        description="none: external_benchmarks skips; lmms_eval: pip install lmms-eval; vlmevalkit: pip install -e a git "
        "checkout of open-compass/VLMEvalKit (its run.py is used)",
    )
    tasks: list[str] = Field(
        default_factory=list,
        description="lmms_eval: task names (e.g. mmstar, ai2d); vlmevalkit: <dataset class>:<dataset> (e.g. "
        "ImageMCQDataset:MMStar, ImageYORNDataset:POPE): its --config JSON needs each dataset's class",
    )
    model_type: str = Field(
        "", description="lmms_eval: its --model (qwen2_vl, qwen2_5_vl); vlmevalkit: a vlmeval.vlm class (Qwen2VLChat); "
        "empty: qwen2_vl / Qwen2VLChat"
    )
    model_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more model settings, the model class's constructor arguments: lmms_eval --model_args pairs after "
        "pretrained=<folder> (e.g. max_pixels); vlmevalkit keys of the model entry beside model_path (e.g. max_new_tokens)",
    )
    batch_size: int = Field(1, ge=1, description="lmms_eval --batch_size (VLMEvalKit generates one sample at a time)")
    log_samples: bool = Field(False, description="lmms_eval --log_samples: every response saved beside the results")
    extra_args: list[str] = Field(
        default_factory=list, description="appended to the harness's command line, e.g. [--limit, '8'] or [--judge, exact_matching]"
    )
    work_dir: str = Field(
        "",
        description="harness outputs, <work_dir>/<harness>/<base|policy>, each cleared before its run; empty: "
        "<storage.cache_dir or ~/.cache/vlm_rl_assets>/external_eval",
    )

    @model_validator(mode="after")
    def tasks_fit_harness(self) -> ExternalEvalConfig:
        if self.harness != "none" and not self.tasks:
            raise ValueError(
                f"harness is {self.harness} but tasks is empty: list its benchmarks, e.g. [mmstar] for lmms_eval, "
                "[ImageMCQDataset:MMStar] for vlmevalkit"
            )
        malformed = [t for t in self.tasks if self.harness == "vlmevalkit" and not re.fullmatch(r"\w+:[^:]+", t)]
        if malformed:
            raise ValueError(
                f"vlmevalkit tasks {malformed} must read <dataset class>:<dataset>, e.g. ImageMCQDataset:MMStar "
                "(the class from vlmeval.dataset)"
            )
        return self


class PipelineConfig(Strict):
    seed: int = Field(0, description="seed of the synthetic tasks")
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="a stage fails when more of its rows are quarantined")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="images with more pixels (width x height) are quarantined as image_oversize"
    )
    model: ModelConfig = ModelConfig()
    engine: EngineConfig = EngineConfig()
    storage: StorageConfig = StorageConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    training: TrainingConfig = TrainingConfig()
    training_health: TrainingHealthConfig = TrainingHealthConfig()
    eval: EvalConfig = EvalConfig()
    pairing: PairingConfig = PairingConfig()
    judges: JudgesConfig = JudgesConfig()
    external_eval: ExternalEvalConfig = ExternalEvalConfig()
    categories: dict[str, CategoryConfig]

    @model_validator(mode="after")
    def has_categories(self) -> PipelineConfig:
        if not self.categories:
            raise ValueError("categories is empty; add at least one, e.g. color: {source: 'synthetic:color'}")
        bad = [name for name in self.categories if not name.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"category names must be letters, digits and '_' (they are partition keys): {bad}")
        return self

    @model_validator(mode="after")
    def judges_configured(self) -> PipelineConfig:
        users = {kind: [n for n, c in self.categories.items() if c.judge == kind] for kind in ("vlm", "reward_model")}
        if users["vlm"] and not self.judges.vlm.model:
            raise ValueError(f"categories {users['vlm']} use judge: vlm; set judges.vlm.model to the served model name")
        if users["reward_model"] and not self.judges.reward_model.path:
            raise ValueError(
                f"categories {users['reward_model']} use judge: reward_model; set judges.reward_model.path to its folder"
            )
        return self

    def category(self, name: str) -> CategoryConfig:
        if name not in self.categories:
            raise KeyError(f"unknown category {name!r}; configured categories: {sorted(self.categories)}")
        return self.categories[name]


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem and where it is."""


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Load `path`, else `$VLM_RL_CONFIG`, else the bundled default."""
    path = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; set {CONFIG_ENV_VAR} to an existing YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with at least 'categories'; got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw, context={"config_dir": path.resolve().parent})
    except ValidationError as err:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path} is invalid:\n{problems}\nSee {DEFAULT_CONFIG_PATH} for a valid example.") from err
