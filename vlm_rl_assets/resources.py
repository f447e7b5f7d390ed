"""Dagster resources: the validated pipeline config and the store it names."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from vlm_rl_assets.config import PipelineConfig, load_config
from vlm_rl_assets.core.storage import LocalStore, MissingUpstreamError

EMBEDDED_BASE_MODEL_KEY = "embedded"


class PipelineResource(dg.ConfigurableResource):
    """The pipeline config (bundled default, `$VLM_RL_CONFIG`, or `config_path`) and its storage root."""

    config_path: str = ""  # empty: $VLM_RL_CONFIG, else the bundled default
    storage_root: str = ""  # empty: the config's storage.root

    def config(self) -> PipelineConfig:
        return load_config(self.config_path or None)

    def store(self) -> LocalStore:
        return LocalStore(self.storage_root or self.config().storage.root)

    def base_model_dir(self) -> Path:
        """The SFT model every rollout samples from: a configured folder or the embedded one built here."""
        path = self.config().model.path
        if path != EMBEDDED_BASE_MODEL_KEY:
            folder = Path(path)
            if not (folder / "config.json").is_file():
                raise MissingUpstreamError(
                    f"model.path {path!r} is not a save_pretrained folder (no config.json); "
                    "point it at your SFT model, or set it to 'embedded'"
                )
            return folder
        folder = self.store().checkpoint_dir("base_model", EMBEDDED_BASE_MODEL_KEY)
        if not (folder / "config.json").is_file():
            raise MissingUpstreamError(
                f"the embedded base model is not built yet ({folder}); materialize it first: "
                "`dagster asset materialize -m vlm_rl_assets.definitions --select base_model`"
            )
        return folder
