"""Rows a stage refused, each with its reason, so nothing is dropped silently."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from PIL import Image, UnidentifiedImageError

from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store


def rows(asset: str, category: str, refused: list[tuple[str, str]]) -> pl.DataFrame:
    """A quarantine table from (key, reason) pairs."""
    data = [{"stage": asset, "category": category, "key": key, "reason": reason} for key, reason in refused]
    return pl.DataFrame(data, schema=schemas.QUARANTINE) if data else schemas.empty(schemas.QUARANTINE)


def reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    return dict(sorted(quarantine.group_by("reason").len().iter_rows()))


def code_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    """Counts by the reason's code (`image_missing` of `image_missing: <path>`): details differ per row."""
    return reason_counts(quarantine.with_columns(reason=pl.col("reason").str.split(":").list.first()))


def load_prompt_images(
    store: Store, prompts: pl.DataFrame, *, asset: str, category: str, max_pixels: int | None = None
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]], pl.DataFrame]:
    """Decode every prompt's images; a prompt with an image that is missing, won't decode or has more
    than `max_pixels` pixels (None: no limit; one huge image can exhaust a batch's memory) is quarantined.

    Returns (prompts that loaded, their images in order, quarantine rows).
    """
    keep, images, refused = [], [], []
    for pid, uris in zip(prompts["prompt_id"], prompts["images"]):
        try:
            loaded = tuple(store.load_image(uri) for uri in uris)
        except FileNotFoundError as err:
            refused.append((pid, f"image_missing: {err.filename}"))
        except Image.DecompressionBombError as err:  # Pillow refuses to open it at all
            refused.append((pid, f"image_oversize: {err}"))
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            refused.append((pid, f"image_undecodable: {err}"))
        else:
            oversize = [img for img in loaded if max_pixels is not None and img.width * img.height > max_pixels]
            if oversize:
                refused.append((pid, f"image_oversize: {oversize[0].width}x{oversize[0].height}"))
            else:
                images.append(loaded)
                keep.append(pid)
    return prompts.filter(pl.col("prompt_id").is_in(keep)), images, rows(asset, category, refused)


def load_images_or_fail(
    store: Store,
    prompts: pl.DataFrame,
    *,
    asset: str,
    category: str,
    max_pixels: int,
    max_bad_fraction: float,
    warn: Callable[[str], None],
) -> tuple[pl.DataFrame, list[tuple[Image.Image, ...]], pl.DataFrame]:
    """`load_prompt_images`, its refusals written to `quarantine/<asset>/<category>`; the stage fails when more
    than `max_bad_fraction` of the prompts were refused, and `warn`s about any it refused below that."""
    loaded, images, refused = load_prompt_images(store, prompts, asset=asset, category=category, max_pixels=max_pixels)
    store.write_table("quarantine", f"{asset}/{category}", refused, schemas.QUARANTINE)
    if refused.height / max(prompts.height, 1) > max_bad_fraction:
        raise ValueError(
            f"{asset}[{category}]: {refused.height} of {prompts.height} prompts have unusable images "
            f"({reason_counts(refused)}), above max_bad_fraction={max_bad_fraction}. "
            f"See {store.table_uri('quarantine', f'{asset}/{category}')}; fix or remove those images, "
            "or raise max_bad_fraction"
        )
    if refused.height:
        warn(f"{asset}[{category}]: quarantined {refused.height} prompts: {reason_counts(refused)}")
    return loaded, images, refused
