"""Writes the example dataset `examples/shapes_dataset/` (data.jsonl and its PNGs) from the synthetic world.

    .venv/bin/python examples/make_shapes_dataset.py

Deterministic: rerunning rewrites the same bytes. The questions end in the short-answer instructions
public benchmarks use, so the `cot` template's rewrite shows; a colour row reuses a shape row's image,
which the store keeps once.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_rl_assets.prompts import world

OUT = Path(__file__).with_name("shapes_dataset")
SHAPE_ROWS, COUNT_ROWS, COLOUR_ROWS, BENCH_FROM = 12, 4, 4, 8  # shape rows from BENCH_FROM on are bench


def main() -> None:
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, item in enumerate(world.generate("shape_choice", "example", SHAPE_ROWS, seed=0)):
        path = _save(item.image, f"shape_{i:02d}.png")
        rows.append(
            {
                "question": f"{item.question}\nAnswer with the option's letter from the given choices directly.",
                "answer": item.answer,
                "answer_type": "choice",
                "choices": list(item.choices),
                "images": [path],
                "rationale": item.rationale,
                "objects": [obj.name for obj in item.objects],
                "split": "bench" if i >= BENCH_FROM else "train",
            }
        )
    for i, item in enumerate(world.generate("count", "example", COUNT_ROWS, seed=0)):
        rows.append(
            {
                "question": f"{item.question}\nAnswer the question using a single word or phrase.",
                "answer": item.answer,
                "answer_type": "number",
                "images": [_save(item.image, f"count_{i:02d}.png")],
                "rationale": item.rationale,
            }
        )
    for shape_row in rows[:COLOUR_ROWS]:  # no split: hashed into train or bench by bench_fraction
        colour, shape = shape_row["objects"][0].split()
        rows.append(
            {
                "question": "What colour is the shape? Answer with a single word.",
                "answer": colour,
                "answer_type": "text",
                "images": shape_row["images"],
                "rationale": f"The {shape} is filled with {colour}.",
            }
        )
    (OUT / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _save(image, name: str) -> str:
    image.save(OUT / "images" / name, format="PNG")
    return f"images/{name}"


if __name__ == "__main__":
    main()
