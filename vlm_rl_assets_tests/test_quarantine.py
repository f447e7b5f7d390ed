"""Oversize images become quarantine rows (`image_oversize: WxH`), not a batch that runs out of memory."""

import polars as pl
import pytest
from PIL import Image

from vlm_rl_assets.store import quarantine
from vlm_rl_assets.store.base import png_bytes
from vlm_rl_assets.store.local import LocalStore
from vlm_rl_assets_tests.helpers import prompt_table


def _prompts(store: LocalStore, sizes: dict[str, tuple[int, int]]) -> pl.DataFrame:
    uris = [[store.put_image(png_bytes(Image.new("RGB", size)))] for size in sizes.values()]
    return prompt_table({pid: ("number", "1") for pid in sizes}).with_columns(images=pl.Series(uris))


def test_images_above_max_pixels_are_quarantined_with_their_size(tmp_path):
    store = LocalStore(tmp_path)
    prompts = _prompts(store, {"small": (64, 64), "edge": (100, 100), "wide": (101, 100)})
    loaded, images, refused = quarantine.load_prompt_images(
        store, prompts, asset="rollouts", category="count", max_pixels=100 * 100
    )
    assert loaded["prompt_id"].to_list() == ["small", "edge"] and [img[0].size for img in images] == [
        (64, 64),
        (100, 100),
    ]
    assert dict(zip(refused["key"], refused["reason"])) == {"wide": "image_oversize: 101x100"}
    assert quarantine.load_prompt_images(store, prompts, asset="rollouts", category="count")[2].is_empty()


def test_an_image_pillow_refuses_to_open_is_oversize_too(tmp_path, monkeypatch: pytest.MonkeyPatch):
    store = LocalStore(tmp_path)
    prompts = _prompts(store, {"bomb": (64, 64)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises above twice this
    _, _, refused = quarantine.load_prompt_images(store, prompts, asset="rollouts", category="count")
    assert refused["reason"][0].startswith("image_oversize: Image size (4096 pixels) exceeds limit")
