"""Rows a stage refused, each with its reason, so nothing is dropped silently."""

from __future__ import annotations

import polars as pl
from PIL import Image, UnidentifiedImageError

from vlm_rl_assets.core import schemas
from vlm_rl_assets.core.storage import LocalStore


def rows(stage: str, category: str, refused: list[tuple[str, str]]) -> pl.DataFrame:
    """A quarantine table from (key, reason) pairs."""
    data = [{"stage": stage, "category": category, "key": key, "reason": reason} for key, reason in refused]
    return pl.DataFrame(data, schema=schemas.QUARANTINE) if data else schemas.empty(schemas.QUARANTINE)


def reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    return dict(sorted(quarantine.group_by("reason").len().iter_rows()))


def load_prompt_images(
    store: LocalStore, prompts: pl.DataFrame, *, stage: str, category: str
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]], pl.DataFrame]:
    """Decode every prompt's images; a prompt with an image that is missing or won't decode is quarantined.

    Returns (prompts that loaded, their images in order, quarantine rows).
    """
    keep, images, refused = [], [], []
    for pid, uris in zip(prompts["prompt_id"], prompts["images"]):
        try:
            images.append(tuple(store.load_image(uri) for uri in uris))
            keep.append(pid)
        except FileNotFoundError as err:
            refused.append((pid, f"image_missing: {err.filename}"))
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            refused.append((pid, f"image_undecodable: {err}"))
    return prompts.filter(pl.col("prompt_id").is_in(keep)), images, rows(stage, category, refused)
