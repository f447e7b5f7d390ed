"""A DPO run as files in its own work folder: what the in-process path and every `accelerate launch` process read,
and where a killed run's Trainer checkpoints wait for the rerun.

The folder is `<root>/<run key>` (`training/run_folder.py`, which GRPO's work folders share); the key hashes everything that
determines the trained weights (the base model's fingerprint, the transformers and TRL versions, the pairs with their
betas and reference log-probs, the settings, the process count), so a rerun of the same run finds its checkpoints and
a changed run never resumes from a stale one.
Images are PNG files named by content; every file is written atomically, so a kill never leaves half of one to be
reused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.dpo.training import PreferencePair
from vlm_rl_assets.model.loading import checkpoint_dtype
from vlm_rl_assets.training.run_folder import png_file, run_folder
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets.training.sharding import CONFIG_FILE, launches, mixed_precision, write_accelerate_config

JOB_FILE = "job.json"
PAIRS_FILE = "pairs.jsonl"
IMAGES_DIR = "images"
TRAINER_DIR = "trainer"  # the Trainer's checkpoints


@dataclass(frozen=True)
class DPOJob:
    model_dir: str  # the base model (save_pretrained folder)
    out_dir: str  # where the main process saves the trained model
    settings: TrainingSettings  # num_processes: how many `accelerate launch` starts; 1 trains in the caller's process
    loss: DPOSettings = field(default_factory=DPOSettings)
    torch_threads: int = 1  # intra-op threads of each process


def write_job(root: str | Path, job: DPOJob, pairs: Sequence[PreferencePair], model_fingerprint: str) -> Path:
    """Write `job` and `pairs` into `<root>/<run key>` (reusing what a killed run left there), with the accelerate
    config file (`training/sharding.py`) when the run is launched; returns the folder."""
    images: dict[str, bytes] = {}
    rows = []
    for pair in pairs:
        files = [png_file(image) for image in pair.images]
        images.update(files)
        names = [name for name, _ in files]
        rows.append({field.name: getattr(pair, field.name) for field in dataclasses.fields(pair)} | {"images": names})
    folder = run_folder(root, model_fingerprint, rows, job.settings, job.loss)
    (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        if not (folder / IMAGES_DIR / name).exists():
            _write(folder / IMAGES_DIR / name, data)
    _write(folder / PAIRS_FILE, "\n".join(json.dumps(row) for row in rows).encode())
    spec = {
        **dataclasses.asdict(job),
        "settings": job.settings.model_dump(mode="json"),
        "loss": job.loss.model_dump(mode="json"),
    }
    _write(folder / JOB_FILE, json.dumps(spec, indent=1).encode())
    settings = job.settings
    if launches(settings.sharding, settings.num_processes):
        precision = mixed_precision(settings.sharding, checkpoint_dtype(job.model_dir))
        write_accelerate_config(folder / CONFIG_FILE, settings.sharding, settings.num_processes, precision)
    return folder


def read_job(folder: str | Path) -> tuple[DPOJob, list[PreferencePair]]:
    """The job and pairs `write_job` put in `folder`."""
    folder = Path(folder)
    raw = json.loads((folder / JOB_FILE).read_text())
    settings, loss = TrainingSettings.model_validate(raw["settings"]), DPOSettings.model_validate(raw["loss"])
    job = DPOJob(**{**raw, "settings": settings, "loss": loss})
    pairs = []
    for line in (folder / PAIRS_FILE).read_text().splitlines():
        row = json.loads(line)
        images = tuple(_image(folder / IMAGES_DIR / name) for name in row.pop("images"))
        pairs.append(PreferencePair(**row, images=images))
    return job, pairs


def _image(path: Path) -> Image.Image:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return image.convert("RGB")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
