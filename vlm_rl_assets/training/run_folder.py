"""The work folder of a training run, DPO's or GRPO's: `<root>/<run key>`, the key hashing everything that determines
the trained weights, so a rerun of the same run finds its Trainer checkpoints there and a changed run never resumes
from a stale one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_rl_assets.settings import Settings
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.training.libraries import library_versions
from vlm_rl_assets.training.settings import TrainingSettings

UNKEYED_SETTINGS = {"log_every", "save_steps", "work_dir"}  # settings that do not change the trained weights


def run_folder(
    root: str | Path, model_fingerprint: str, inputs: Any, settings: TrainingSettings, algorithm: Settings
) -> Path:
    """`<root>/<run key>` of a training run: the key hashes the base model's fingerprint, the keyed libraries'
    versions, the run's `inputs` (JSON: its examples, their images by `png_file` name, ...), its settings but
    `UNKEYED_SETTINGS` and its algorithm's own settings (DPO's loss, GRPO's `grpo`)."""
    keyed = [settings.model_dump(mode="json", exclude=UNKEYED_SETTINGS), algorithm.model_dump(mode="json")]
    blob = json.dumps([model_fingerprint, library_versions(), inputs, keyed], sort_keys=True).encode()
    return Path(root) / hashlib.sha256(blob).hexdigest()[:16]


def png_file(image: Image.Image) -> tuple[str, bytes]:
    """The file name an image is known by in a run's key and folder (its PNG bytes' hash), and those bytes."""
    data = png_bytes(image)
    return f"{hashlib.sha256(data).hexdigest()}.png", data
