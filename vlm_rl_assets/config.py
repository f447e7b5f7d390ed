"""The pipeline config: one YAML file, validated on load, errors naming the key and the fix.

The embedded default (`default_config.yaml`, bundled) runs on a laptop CPU; `VLM_RL_CONFIG` points
to a user's file. Only configuration differs between that and a 7B model on GPUs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlm_rl_assets.core.world import TASKS

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
    max_steps: int = Field(600, ge=1)
    eval_every: int = Field(25, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    seed: int = 0


class TrainingConfig(Strict):
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    epochs: int = Field(2, ge=1)
    loss_type: str = "sigmoid"
    seed: int = 0


class EvalConfig(Strict):
    max_new_tokens: int = Field(48, ge=1)


class PairingConfig(Strict):
    min_margin: float = Field(0.5, ge=0, le=1, description="chosen score minus rejected score, at least")
    max_pairs_per_prompt: int = Field(1, ge=1)


class CategoryConfig(Strict):
    source: str = Field(description="synthetic:<task>")
    template: Literal["plain", "cot"] = Field("plain", description="cot: chain of thought for choice and number answers")
    min_response_words: int = Field(1, ge=1, description="shorter references and responses are dropped")
    samples_per_prompt: int = Field(8, ge=2, description="rollouts per prompt (a group)")
    n_train: int = Field(1000, ge=1, description="prompts to roll out")
    n_bench: int = Field(200, ge=1, description="held-out benchmark prompts")
    beta: float = Field(0.1, gt=0, description="DPO beta; higher for long answers")
    judge: Literal["rule", "reference"] = "rule"
    mixture_weight: float = Field(1.0, ge=0, description="share in the policy's balanced mixture")

    @field_validator("source")
    @classmethod
    def known_source(cls, source: str) -> str:
        kind, _, task = source.partition(":")
        if kind != "synthetic" or task not in TASKS:
            raise ValueError(f"unknown source {source!r}; use 'synthetic:<task>' with task one of {sorted(TASKS)}")
        return source

    @property
    def task(self) -> str:
        return self.source.partition(":")[2]


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
    eval: EvalConfig = EvalConfig()
    pairing: PairingConfig = PairingConfig()
    categories: dict[str, CategoryConfig]

    @model_validator(mode="after")
    def has_categories(self) -> PipelineConfig:
        if not self.categories:
            raise ValueError("categories is empty; add at least one, e.g. color: {source: 'synthetic:color'}")
        bad = [name for name in self.categories if not name.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"category names must be letters, digits and '_' (they are partition keys): {bad}")
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
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path} is invalid:\n{problems}\nSee {DEFAULT_CONFIG_PATH} for a valid example.") from err
