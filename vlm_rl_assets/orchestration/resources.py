"""The one resource every step takes: the validated pipeline config of this run and the store it names."""

from __future__ import annotations

import functools
from pathlib import Path

from vlm_rl_assets.config import PipelineConfig, load_config
from vlm_rl_assets.model.folder_check import check_model_folder
from vlm_rl_assets.model.settings import EMBEDDED
from vlm_rl_assets.names import BASE_MODEL
from vlm_rl_assets.rounds.plan import start_model
from vlm_rl_assets.store.base import MissingUpstreamError, Store
from vlm_rl_assets.store.open import open_store


class PipelineResource:
    """The config `definitions.build_defs` was given (loaded once per process) and its storage root: a plain object,
    which Dagster hands to each step as the `pipeline` resource (`dg.ResourceParam[PipelineResource]`)."""

    def __init__(self, config: PipelineConfig, storage_root: str = "") -> None:
        self.config = config
        self.storage_root = storage_root or config.storage.root  # a folder or s3://bucket/prefix

    @classmethod
    def from_file(cls, path: str | Path, storage_root: str = "") -> PipelineResource:
        """The config file at `path`, validated."""
        return cls(load_config(path), storage_root)

    @functools.cached_property
    def store(self) -> Store:
        return open_store(self.storage_root, self.config.storage.cache_path)

    def base_model_dir(self) -> Path:
        """The SFT model every rollout samples from: a configured folder (checked: `check_model_folder`) or the
        embedded one built here."""
        model = self.config.model
        path = model.path
        if path != EMBEDDED:
            folder = Path(path)
            if not (folder / "config.json").is_file():
                raise MissingUpstreamError(
                    f"model.path {path!r} is not a save_pretrained folder (no config.json); "
                    "point it at your SFT model, or set it to 'embedded'"
                )
            check_model_folder(folder, model.trust_remote_code)
            return folder
        return self.store.local_checkpoint(BASE_MODEL, EMBEDDED)

    def start_model_dir(self, pipeline_round: int) -> Path:
        """The model a round samples from and trains from: the base in round 1, else the round before's policy once
        its outcome lets the rounds go on (`rounds/plan.py`). Every step that rolls out or trains asks for it, so
        here its memory plan is checked first: a stage that cannot fit fails before a model is loaded."""
        base = self.base_model_dir()
        plan = self.config.memory_plan(base)
        if plan is not None:
            plan.check()
        return start_model(self.store, base, pipeline_round, self.config.rounds.stop_early)
