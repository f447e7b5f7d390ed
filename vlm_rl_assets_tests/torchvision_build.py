"""Builds the tiny VLM where torchvision imports (as in the `vllm` extra and the CUDA image) and prints what the
saved checkpoint loads as; run by test_tiny_model.py in its own process, since the check for torchvision is cached.

    python -m vlm_rl_assets_tests.torchvision_build OUT_DIR [TORCHVISION_DIR]

TORCHVISION_DIR: a folder holding a torchvision package (`pip install --no-deps --target DIR torchvision==0.28.0`)
put first on the path. PyPI's torchvision is a CUDA build: beside CPU torch its compiled ops do not load, but its
Python transforms, which transformers' video processor uses, do once the two ops its import registers are declared.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path


def _declare_missing_ops() -> None:
    import torch

    compiled = Path(find_spec("torchvision").submodule_search_locations[0]) / "_C.so"
    try:
        torch.ops.load_library(str(compiled))
    except OSError:
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _declare_missing_ops.library = library  # kept alive: dropping it undefines the ops


def main() -> None:
    out_dir = Path(sys.argv[1])
    if len(sys.argv) > 2:
        sys.path.insert(0, sys.argv[2])
    _declare_missing_ops()
    from PIL import Image

    from vlm_rl_assets.model.chat import user_message
    from vlm_rl_assets.model.loading import load_processor, torchvision_available
    from vlm_rl_assets.model.tiny_model import build_tiny_vlm
    from vlm_rl_assets_tests.conftest import TINY_CORPUS

    assert torchvision_available()
    processor = load_processor(build_tiny_vlm(out_dir, TINY_CORPUS, seed=0))
    text = processor.apply_chat_template([user_message("What colour?", 1)], add_generation_prompt=True)
    counts = {}
    for size in ((112, 112), (64, 64), (90, 140)):
        ids = processor(text=[text], images=[[Image.new("RGB", size)]], return_tensors="pt")["input_ids"][0]
        counts["x".join(map(str, size))] = ids.tolist().count(processor.image_token_id)
    print(
        json.dumps(
            {
                "processor": type(processor).__module__ + "." + type(processor).__name__,
                "video_processor": type(processor.video_processor).__name__,
                "image_tokens": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
