"""Dagster resources: the validated pipeline config and the store it names."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from vlm_rl_assets.config import PipelineConfig, load_config
from vlm_rl_assets.model.folder_check import check_model_folder
from vlm_rl_assets.model.settings import EMBEDDED
from vlm_rl_assets.rounds.plan import start_model
from vlm_rl_assets.store.base import MissingUpstreamError, Store
from vlm_rl_assets.store.open import open_store


class PipelineResource(dg.ConfigurableResource):
    """The pipeline config (bundled default, `$VLM_RL_CONFIG`, or `config_path`) and its storage root."""

    config_path: str = ""  # empty: $VLM_RL_CONFIG, else the bundled default
    storage_root: str = ""  # empty: the config's storage.root; a folder or s3://bucket/prefix

    def config(self) -> PipelineConfig:
        return load_config(self.config_path or None)

    def store(self) -> Store:
        storage = self.config().storage
        return open_store(self.storage_root or storage.root, storage.cache_path)

    def base_model_dir(self) -> Path:
        """The SFT model every rollout samples from: a configured folder (checked: `check_model_folder`) or the
        embedded one built here."""
        model = self.config().model
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
        return self.store().local_checkpoint("base_model", EMBEDDED, partitioned=False)

    def start_model_dir(self, pipeline_round: int) -> Path:
        """The model a round samples from and trains from: the base in round 1, else the round before's policy once
        its outcome lets the rounds go on (`rounds/plan.py`)."""
        return start_model(self.store(), self.base_model_dir(), pipeline_round, self.config().rounds.stop_early)
