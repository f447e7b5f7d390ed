"""A checkpoint's identity by content: the key of its rollout shards, its reference log-probs and its DPO runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vlm_rl_assets.model.train_result import METRICS_FILE

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# files that decide neither tokens nor weights; hidden files (.gitattributes, ...) are skipped too
UNREAD_FILES = frozenset(
    {
        "README.md",  # the model card
        "LICENSE",
        "training_args.bin",  # the Trainer's pickled arguments (its output path included); no loader reads it
        METRICS_FILE,  # what a training run logged, written beside the weights it produced
    }
)


def model_fingerprint(model_dir: str | Path) -> str:
    """Identifies a checkpoint by content, so a copy downloaded on another machine keeps its id and its finished work.

    Hashes every file at the top of the folder (the level `from_pretrained` reads) except hidden files and
    `UNREAD_FILES`: weights in any format, config, generation config, tokenizer, chat template, image processor
    settings. Excluding a named few rather than including a list means a file type no one thought of changes the id
    (a needless rerun) instead of being missed (stale rollouts and log-probs). Each file is read once, streamed:
    seconds for a 7B model, next to hours of sampling.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist; point model.path at a save_pretrained folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in UNREAD_FILES
    )
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        raise ValueError(
            f"model folder {folder} holds no weights (*{', *'.join(WEIGHT_SUFFIXES)}), only {[p.name for p in files]}; "
            "point model.path at a save_pretrained folder with its weights"
        )
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as f:
            digest.update(path.name.encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:12]
