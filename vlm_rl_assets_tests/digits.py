"""A user's dataset of real images: scikit-learn's 1797 scanned handwritten digits (8x8, bundled in its wheel, no
network), written as PNGs and a JSONL in the README's "Bring your own data" format."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

QUESTION = "Which digit is written in the image?"
SIZE = 56  # the tiny model's smallest image, 4 image tokens: each 14x14 patch covers 2x2 pixels of the scan
CHANCE = 0.1  # ten classes, about equally frequent


def write_digits(folder: Path, size: int = SIZE) -> Path:
    """`folder/digits.jsonl` (answer_type number, no split: placed by the hash) and its images under
    `folder/images/`, upscaled from 8x8 by nearest neighbour, dark ink on white."""
    path = folder / "digits.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in digit_rows(folder, size=size)))
    return path


def digit_rows(folder: Path, count: int | None = None, size: int = SIZE, images: str = "images") -> list[dict]:
    """The first `count` digits (all by default) as native rows, their images written under `folder/images`."""
    from sklearn.datasets import load_digits  # heavy (scipy): only the tests and benches that use the digits

    digits = load_digits()
    (folder / images).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (pixels, label) in enumerate(zip(digits.images[:count], digits.target[:count])):
        scan = Image.fromarray((255 - pixels * 255 / 16).astype("uint8"), mode="L")  # values 0..16, 16 = ink
        name = f"{images}/digit_{i:04d}.png".lstrip("/")
        scan.resize((size, size), Image.Resampling.NEAREST).convert("RGB").save(folder / name)
        rows.append({"question": QUESTION, "answer": str(label), "answer_type": "number", "images": [name]})
    return rows
