"""Which Trainer checkpoint a rerun resumes from: the newest complete one in the run's work folder.

The Trainer writes `checkpoint-<step>/` piece by piece and `trainer_state.json` last, so a folder whose state file
is missing or unreadable was cut short by a kill; it is deleted, and the one before it is used. What else the folder
holds is the Trainer's business: weights and optimizer.pt, or a sharded run's pytorch_model_fsdp.bin and
optimizer.bin (FSDP) or global_step<N>/ (DeepSpeed), which the Trainer's own resume reads.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_step(path: Path) -> int:
    """The optimizer step a `checkpoint-<step>` folder holds."""
    match = _CHECKPOINT.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not a Trainer checkpoint folder ({PREFIX_CHECKPOINT_DIR}-<step>)")
    return int(match.group(1))


def latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `work_dir` (None: start from step 0); incomplete newer ones are removed."""
    folder = Path(work_dir)
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)] if folder.is_dir() else []
    for path in sorted(found, key=checkpoint_step, reverse=True):
        if _complete(path):
            return path
        shutil.rmtree(path, ignore_errors=True)  # every process of a launched run looks: another may be deleting it
    return None


def _complete(path: Path) -> bool:
    try:
        state = json.loads((path / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == checkpoint_step(path)
