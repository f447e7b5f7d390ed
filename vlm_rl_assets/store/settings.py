"""Where the pipeline's tables, images and checkpoints live, and the local cache beside them."""

import os
from pathlib import Path

from pydantic import Field

from vlm_rl_assets.settings import Settings

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlm_rl_assets"


class StorageSettings(Settings):
    root: str = Field("data", description="folder or s3://bucket/prefix that holds every table, image and checkpoint")
    cache_dir: str = Field(
        "",
        description="local copies of checkpoints read from an s3:// root, unfinished training runs, harness outputs; "
        "empty: ~/.cache/vlm_rl_assets",
    )

    @property
    def cache_path(self) -> Path:
        """The local cache folder: `cache_dir`, else the user's cache."""
        return Path(self.cache_dir) if self.cache_dir else DEFAULT_CACHE_DIR
