"""The pipeline config: one YAML file, validated on load, errors naming the key and the fix.

The embedded default (`default_config.yaml`, bundled) runs on a laptop CPU; `VLM_RL_CONFIG` points
to a user's file. Only configuration differs between that and a 7B model on GPUs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from vlm_rl_assets.bootstrap.settings import BootstrapSettings, SyntheticCategory
from vlm_rl_assets.dpo.settings import ONE_BETA_WHY, SORTED_LOSS_TYPES, DPOSettings
from vlm_rl_assets.evaluation.settings import EvalSettings, ExternalEvalSettings
from vlm_rl_assets.grpo.settings import GRPOSettings
from vlm_rl_assets.judging.calibration import HUMAN, REFERENCES
from vlm_rl_assets.judging.settings import JudgeKind, JudgesSettings
from vlm_rl_assets.model.settings import EMBEDDED, ModelSettings
from vlm_rl_assets.pairs.settings import PairingSettings
from vlm_rl_assets.planning.plan import UNKNOWN_CARD, MemoryPlan, PlanRequest, budget_of, plan_memory
from vlm_rl_assets.planning.settings import ResourcesSettings
from vlm_rl_assets.planning.shape import ModelShape, ShapeUnknown, embedded_shape, shape_of_folder
from vlm_rl_assets.prompts.category import PromptSpec
from vlm_rl_assets.prompts.dataset_files import is_dataset_source
from vlm_rl_assets.prompts.prompt_table import ANSWER_TYPES
from vlm_rl_assets.prompts.row_formats import FORMATS, KEYS, RowFormat
from vlm_rl_assets.prompts.world import TASKS
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rounds.settings import RoundsSettings
from vlm_rl_assets.settings import Settings
from vlm_rl_assets.store.open import resolve_uri
from vlm_rl_assets.store.settings import StorageSettings
from vlm_rl_assets.training.settings import HealthSettings, TrainingSettings

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
CONFIG_ENV_VAR = "VLM_RL_CONFIG"


Algorithm = Literal["dpo", "grpo"]


class TrainingConfig(TrainingSettings, DPOSettings):
    """The `training:` section: the run's settings (`TrainingSettings`) and DPO's loss (`DPOSettings`) side by side,
    the algorithm that trains, and GRPO's own settings under `grpo:`. The trainers take the parts: `shared()` and
    `dpo()` or `grpo`."""

    algorithm: Algorithm = Field(
        "dpo", description="dpo: offline, on judged_pairs; grpo: online, sampling and judging during training (grpo:)"
    )
    grpo: GRPOSettings = Field(GRPOSettings(), description="read only with algorithm: grpo")

    @model_validator(mode="after")
    def settings_of_the_algorithm(self) -> TrainingConfig:
        """A grpo block without algorithm: grpo would train DPO unnoticed, and GRPO runs in one unsharded process.
        DPO's own settings (loss_type, batch_size, save_steps, ...) may stay under algorithm: grpo, unread, so one
        file serves both algorithms (an experiment's variant only sets training.algorithm and training.grpo)."""
        # compared with the defaults, not by presence: a dumped config (an experiment variant) lists them all
        if self.algorithm == "dpo" and self.grpo != GRPOSettings():
            raise ValueError("grpo settings are read only with algorithm: grpo; set algorithm: grpo or drop grpo")
        if self.algorithm == "grpo" and self.num_processes > 1:
            raise ValueError(
                f"algorithm: grpo trains in the asset's process (its sampling and judging are not spread over "
                f"processes here), so num_processes {self.num_processes} cannot be honoured; set num_processes: 1"
            )
        if self.algorithm == "grpo" and self.sharding != "none":
            raise ValueError(
                f"algorithm: grpo trains in the asset's process, its reward functions the judges open there, and "
                f"accelerate shards only processes it launched, so sharding: {self.sharding} cannot be honoured; "
                "set training.sharding: none (or train with algorithm: dpo, which launches its workers)"
            )
        return self

    def shared(self) -> TrainingSettings:
        """The run's settings, whichever algorithm trains."""
        return TrainingSettings(**{name: getattr(self, name) for name in TrainingSettings.model_fields})

    def dpo(self) -> DPOSettings:
        """DPO's loss as `training:` sets it (a category's `loss:` replaces it for its own run)."""
        return DPOSettings(**{name: getattr(self, name) for name in DPOSettings.model_fields})


class CategoryConfig(Settings):
    source: str = Field(
        description="synthetic:<task>, or a dataset: a .parquet / .jsonl / .json file, a folder or glob of Parquet "
        "shards, or a datasets save_to_disk folder; a path (relative to this file's folder) or s3:// URI"
    )
    format: Literal[FORMATS] = Field(  # type: ignore[valid-type]
        "native",
        description="a dataset's layout: native (this project's columns), llava (image + conversations), messages "
        "(TRL: images + messages, or prompt/completion), mcq_columns (question, options A..E or choices, answer)",
    )
    columns: dict[str, str] = Field(
        {}, description="the dataset's own column for a key of its format, e.g. {question: problem, images: image}"
    )
    answer_type: str | None = Field(
        None, description="every row's answer type, for a dataset without an answer_type column (llava, messages)"
    )
    template: Literal["plain", "cot"] = Field(
        "plain",
        description="cot: chain of thought (choice, number, text, math answers) replacing short-answer instructions",
    )
    mcq_to_open: bool = Field(
        False, description="rewrite multiple choice as an open question answered by the option's text"
    )
    min_response_words: int = Field(1, ge=1, description="shorter references and responses are dropped")
    samples_per_prompt: int = Field(8, ge=2, description="rollouts per prompt (a group)")
    n_train: int = Field(1000, ge=1, description="prompts to roll out (a dataset: its first n_train train rows)")
    n_dev: int = Field(
        200,
        ge=1,
        description="held-out prompts where sweeps and defaults are chosen (a dataset: its first n_dev dev rows)",
    )
    n_bench: int = Field(
        200, ge=1, description="held-out benchmark prompts, read only to report (a dataset: its first n_bench)"
    )
    bench_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of a dataset's rows without a split hashed into bench"
    )
    dev_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of a dataset's rows without a split hashed into dev"
    )
    bootstrap_fraction: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="with model.path embedded: share of a dataset's rows without a split hashed into bootstrap, the "
        "embedded base's SFT rows (at most bootstrap.examples_per_category), taken from train: never rolled out, "
        "never benchmarked. With your own model these rows stay train",
    )
    beta: float = Field(
        0.1,
        gt=0,
        description="DPO beta; higher for long answers. Stamped on each pair by judged_pairs, read from there by training",
    )
    loss: DPOSettings | None = Field(
        None,
        description="this category's own DPO loss for dpo_checkpoint[c]; unset: training's (the mixture always uses training's); "
        "not read by GRPO",
    )
    judge: JudgeKind = Field(
        "rule", description="rule | reference (CHAIR scene) | vlm | reward_model; settings under judges:"
    )
    strict_format: bool = Field(
        False,
        description="credit only a final answer in the instructed form, after 'Answer:' or in \\boxed{} (template cot, "
        "judge rule or reference); else a response without one is read as a whole",
    )
    mixture_weight: float = Field(1.0, ge=0, description="share in the policy's balanced mixture")
    min_group_diversity: float = Field(
        0.0, ge=0, le=1, description="groups whose unique fraction (distinct responses / samples) is lower are dropped"
    )
    calibration_labels: str | None = Field(
        None,
        description="labelled sample the judge must agree with before pairs are made: a .parquet/.jsonl path "
        "(prompt_id, label, and response or sample_idx), 'human' (the labels given on the review pages, "
        "python -m vlm_rl_assets.review serve) or 'references' (built-in sanity sample); see docs",
    )
    calibration_min_f1: float = Field(
        0.9, ge=0, le=1, description="below this F1 against the labels, judged_pairs is blocked"
    )
    calibration_min_labels: int = Field(
        30,
        ge=1,
        description="calibration_labels: human: fewer current labels than this block judged_pairs (too few to trust)",
    )
    allow_chance_base: bool = Field(
        False,
        description="run prompt_mixture and rollouts of this category even though base_model found the base at chance "
        "on it (dev accuracy within noise of chance: DPO has nothing to sharpen); see base_model's at_chance",
    )

    @field_validator("calibration_labels")
    @classmethod
    def labels_file_or_named_sample(cls, labels: str | None) -> str | None:
        if labels not in (None, HUMAN, REFERENCES) and not labels.endswith((".parquet", ".jsonl", ".ndjson")):
            raise ValueError(
                f"calibration_labels {labels!r}: use a .parquet or .jsonl file, {HUMAN!r} or {REFERENCES!r}"
            )
        return labels

    @model_validator(mode="after")
    def train_rows_left(self) -> CategoryConfig:
        if self.bench_fraction + self.dev_fraction + self.bootstrap_fraction >= 1:
            raise ValueError(
                f"bench_fraction {self.bench_fraction} + dev_fraction {self.dev_fraction} + bootstrap_fraction "
                f"{self.bootstrap_fraction} leave no rows for train; keep their sum below 1 (e.g. 0.2, 0.1 and 0.4)"
            )
        return self

    @model_validator(mode="after")
    def strict_format_has_a_form(self) -> CategoryConfig:
        if self.strict_format and (self.template != "cot" or self.judge not in ("rule", "reference")):
            raise ValueError(
                f"strict_format needs template: cot (the template that instructs 'Answer:') and judge: rule or "
                f"reference, got template: {self.template}, judge: {self.judge}; set strict_format: false"
            )
        return self

    @model_validator(mode="after")
    def format_reads_the_source(self) -> CategoryConfig:
        """A layout for a dataset only, columns its format reads, an answer type each row can take."""
        unknown = sorted(set(self.columns) - set(KEYS[self.format]))
        if self.synthetic and (self.format != "native" or self.columns or self.answer_type):
            raise ValueError("format, columns and answer_type read a dataset; a synthetic source takes none of them")
        if unknown:
            raise ValueError(
                f"columns names {unknown}, which format {self.format} does not read; its keys: {sorted(KEYS[self.format])}"
            )
        if self.answer_type is not None and self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type {self.answer_type!r}: use one of {' | '.join(ANSWER_TYPES)}")
        if self.format in ("llava", "messages") and self.answer_type is None:
            raise ValueError(
                f"format {self.format} has no answer type column; set answer_type (one of {' | '.join(ANSWER_TYPES)})"
            )
        if self.format == "mcq_columns" and self.answer_type not in (None, "choice"):
            raise ValueError(f"format mcq_columns is multiple choice; drop answer_type {self.answer_type!r}")
        return self

    def row_format(self) -> RowFormat:
        return RowFormat(self.format, dict(self.columns), self.answer_type)

    @field_validator("source")
    @classmethod
    def known_source(cls, source: str, info: ValidationInfo) -> str:
        """A dataset path is made absolute against the config file's folder (`config_dir` in the context)."""
        if is_dataset_source(source):
            config_dir = (info.context or {}).get("config_dir")
            return resolve_uri(source, str(config_dir)) if config_dir else source
        kind, _, task = source.partition(":")
        if kind != "synthetic" or task not in TASKS:
            raise ValueError(
                f"unknown source {source!r}; use 'synthetic:<task>' with task one of {sorted(TASKS)}, "
                "or a dataset: a .parquet / .jsonl / .json file, a folder or glob of them (a path or s3:// URI)"
            )
        return source

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic:")

    @property
    def task(self) -> str:
        """The synthetic task (synthetic sources only)."""
        return self.source.partition(":")[2]


class PipelineConfig(Settings):
    seed: int = Field(0, description="seed of the synthetic tasks")
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="a stage fails when more of its rows are quarantined")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="images with more pixels (width x height) are quarantined as image_oversize"
    )
    model: ModelSettings = ModelSettings()
    resources: ResourcesSettings = ResourcesSettings()
    engine: EngineSettings = EngineSettings()
    storage: StorageSettings = StorageSettings()
    bootstrap: BootstrapSettings = BootstrapSettings()
    training: TrainingConfig = TrainingConfig()
    rounds: RoundsSettings = RoundsSettings()
    training_health: HealthSettings = HealthSettings()
    eval: EvalSettings = EvalSettings()
    pairing: PairingSettings = PairingSettings()
    judges: JudgesSettings = JudgesSettings()
    external_eval: ExternalEvalSettings = ExternalEvalSettings()
    categories: dict[str, CategoryConfig]

    @model_validator(mode="after")
    def has_categories(self) -> PipelineConfig:
        if not self.categories:
            raise ValueError("categories is empty; add at least one, e.g. color: {source: 'synthetic:color'}")
        bad = [name for name in self.categories if not (name.replace("_", "").isalnum() and name[0].isalpha())]
        if bad:
            raise ValueError(
                f"category names must start with a letter and hold letters, digits and '_' (they are partition keys; "
                f"a key of digits is a round): {bad}"
            )
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

    @model_validator(mode="after")
    def one_beta_for_sorted_losses(self) -> PipelineConfig:
        """The mixture trains every weighted category's pairs with training's loss (dpo/settings.py ONE_BETA_WHY)."""
        betas = {name: cat.beta for name, cat in self.categories.items() if cat.mixture_weight > 0}
        if SORTED_LOSS_TYPES & set(self.training.loss_type) and len(set(betas.values())) > 1:
            raise ValueError(
                f"training.{ONE_BETA_WHY}, and the policy's mixture has categories.<c>.beta {betas}. Give those "
                "categories one beta, or move aot to their own categories.<c>.loss and give training another loss_type"
            )
        return self

    @model_validator(mode="after")
    def sharding_on_gpus(self) -> PipelineConfig:
        """accelerate ignores its FSDP plugin on CPU (and DeepSpeed needs CUDA): a sharded CPU run would silently
        train unsharded, so it is refused."""
        if self.training.sharding != "none" and not self.model.device.startswith("cuda"):
            raise ValueError(
                f"training.sharding: {self.training.sharding} needs GPUs (model.device: cuda): accelerate does not "
                f"shard on {self.model.device} (its FSDP plugin is ignored there); set training.sharding: none"
            )
        return self

    @model_validator(mode="after")
    def one_gpu_per_process(self) -> PipelineConfig:
        """On GPUs each training process holds a card of its own: more processes than `resources` has cards would
        share one (NCCL refuses) or wait for cards the step's pod does not hold (k8s.py). On CPU they are gloo
        processes, no cards."""
        cards, processes = self.resources.cards, self.training.num_processes
        if self.model.device.startswith("cuda") and processes > cards:
            raise ValueError(
                f"training.num_processes {processes} is more than the {cards} GPUs resources gives a training step "
                f"(resources.gpus_per_node); each process holds one GPU: set num_processes to at most {cards}, or "
                "resources.gpus_per_node to the GPUs a node has"
            )
        return self

    @model_validator(mode="after")
    def grpo_anchored_to_its_start(self) -> PipelineConfig:
        """TRL's GRPOTrainer keeps the model it starts from as its KL reference: in round r, round r-1's policy."""
        if self.training.algorithm == "grpo" and self.rounds.count > 1 and self.rounds.reference == "base":
            raise ValueError(
                "rounds.reference: base needs training.algorithm: dpo; GRPO's KL reference is the model each round "
                "starts from (set rounds.reference: previous_round)"
            )
        return self

    def category(self, name: str) -> CategoryConfig:
        if name not in self.categories:
            raise KeyError(f"unknown category {name!r}; configured categories: {sorted(self.categories)}")
        return self.categories[name]

    def dpo_settings(self, category: str | None = None) -> tuple[TrainingSettings, DPOSettings]:
        """What a DPO run trains with: training's settings and loss, with category's own `loss` when it has one
        (dpo_checkpoint[c]); without a category, the mixture's (policy_checkpoint): training's loss, with
        `training.mixture`'s epochs and learning rate."""
        shared, loss = self.training.shared(), self.training.dpo()
        if category is None:
            return shared.model_copy(update=self.training.mixture.overrides()), loss
        own = self.category(category).loss
        return shared, loss if own is None else own

    def grpo_settings(self) -> tuple[TrainingSettings, GRPOSettings]:
        """What a GRPO run trains with, a category's or the policy's: training's settings and `training.grpo`."""
        return self.training.shared(), self.training.grpo

    def prompt_splits(self, category: str) -> tuple[dict[str, int], dict[str, float]]:
        """A category's size per split, and where a dataset row without a `split` goes (prompts/datasets.py
        `hashed_split`). With model.path embedded a dataset also has `bootstrap` rows: base_model's SFT rows."""
        cat = self.category(category)
        sizes = {"train": cat.n_train, "dev": cat.n_dev, "bench": cat.n_bench}
        fractions = {"bench": cat.bench_fraction, "dev": cat.dev_fraction}
        if self.model.path == EMBEDDED and not cat.synthetic:
            sizes["bootstrap"] = self.bootstrap.examples_for(category)
            fractions["bootstrap"] = cat.bootstrap_fraction
        return sizes, fractions

    def prompt_spec(self, category: str) -> PromptSpec:
        """What decides a category's prompts (`prompts/category.py`)."""
        cat = self.category(category)
        sizes, fractions = self.prompt_splits(category)
        return PromptSpec(
            source=cat.source,
            sizes=sizes,
            fractions=fractions,
            seed=self.seed,
            template=cat.template,
            min_response_words=cat.min_response_words,
            mcq_to_open=cat.mcq_to_open,
            require_objects=cat.judge == "reference",
            row_format=cat.row_format(),
        )

    def plan_or_why(self, folder: str | Path | None = None) -> MemoryPlan | str:
        """Every stage's peak memory per GPU (or on the CPU) against `resources` (planning/plan.py), for the model
        in `folder` (default: the configured one; the embedded default: its spec); where its shape or the card is
        unknown here, why (the steps plan it once the folder is there)."""
        shape = self._shape_or_why(folder)
        if isinstance(shape, str):
            return shape
        budget = budget_of(self.resources, self.model.device)
        if budget is None:
            return UNKNOWN_CARD
        return plan_memory(
            PlanRequest(
                shape=shape,
                budget=budget,
                training=self.training.shared(),
                algorithm=self.training.algorithm,
                grpo=self.training.grpo,
                engine=self.engine,
                prompt_tokens=self.resources.prompt_tokens,
            )
        )

    def memory_plan(self, folder: str | Path | None = None) -> MemoryPlan | None:
        """`plan_or_why`'s plan, None where it is unknown here."""
        plan = self.plan_or_why(folder)
        return plan if isinstance(plan, MemoryPlan) else None

    def _shape_or_why(self, folder: str | Path | None) -> ModelShape | str:
        if folder is None and self.model.path == EMBEDDED:
            return embedded_shape()
        path = Path(folder or self.model.path)
        if not (path / "config.json").is_file():
            return f"model folder {str(path)!r} has no config.json on this machine: the plan is made once it has"
        try:
            return shape_of_folder(path)
        except ShapeUnknown as err:
            return f"model folder {str(path)!r}: {err}; the plan is made once it has them"

    def synthetic_categories(self) -> dict[str, SyntheticCategory]:
        """The synthetic categories, each with its task and template: what the embedded base is trained on."""
        return {
            name: SyntheticCategory(task=cat.task, template=cat.template)
            for name, cat in self.categories.items()
            if cat.synthetic
        }


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem and where it is."""


def configured(path: str | Path | None = None, check_memory: bool = True) -> PipelineConfig:
    """The config this process runs: `path`, else `$VLM_RL_CONFIG`, else the bundled default. The one reader of the
    variable: the code location (`definitions.py`) and the CLIs call it once and pass the config on."""
    return load_config(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH, check_memory)


def load_config(path: str | Path = DEFAULT_CONFIG_PATH, check_memory: bool = True) -> PipelineConfig:
    """Load and validate the config file at `path` (the bundled default unless given); with `check_memory`, refuse
    one whose memory plan does not fit (planning/plan.py), before hours are spent finding out."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; set {CONFIG_ENV_VAR} to an existing YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with at least 'categories'; got {type(raw).__name__}")
    try:
        config = PipelineConfig.model_validate(raw, context={"config_dir": path.resolve().parent})
    except ValidationError as err:
        problems = "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path} is invalid:\n{problems}\nSee {DEFAULT_CONFIG_PATH} for a valid example.") from err
    plan = config.memory_plan() if check_memory else None
    if plan is not None and not plan.fits:
        raise ConfigError(f"{path}: {plan.refusal()}\nSee the whole plan: python -m vlm_rl_assets plan --config {path}")
    return config
