"""VLLMEngine: the `HFEngine` contract on vLLM's offline `LLM`, for rollouts on GPUs.

vLLM is an optional extra (`pip install '.[vllm]'`, CUDA only) imported only when this engine is
opened, so the CPU path never needs it. Prompts are the text `HFEngine` and the trainers see (the
checkpoint's chat template over `chat.user_message`); vLLM expands each image placeholder itself,
which `preflight.py` compares with the DPO trainer's tokenization before a rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from vlm_rl_assets.rollouts.engine import (
    Completion,
    GenerationRequest,
    SamplingParams,
    chat_prompt,
    generate_in_batches,
)

VLLM_MISSING = (
    "engine.kind is vllm but vLLM is not installed: pip install '.[vllm]' on a GPU machine, or set engine.kind: hf"
)


class VLLMEngine:
    """vLLM's offline `LLM`: continuous batching, tensor parallel, CUDA.

    Sample j of request i is seeded with `seed + i * n + j` (vLLM seeds the j-th of a request's n
    samples with its seed + j), so no two samples share a seed and none depends on batching. Text is
    decoded with the checkpoint's tokenizer as `HFEngine` does; eos is counted in `n_tokens`.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = 64,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_images_per_prompt: int = 1,
        seed: int = 0,
    ) -> None:
        if find_spec("vllm") is None:
            raise ImportError(VLLM_MISSING)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        import vllm

        from vlm_rl_assets.model.tiny_model import load_processor

        self._vllm = vllm
        self.processor = load_processor(model_path)
        self.batch_size = batch_size  # sequences per `LLM.generate` call (prompts x n), as in HFEngine
        self.llm = vllm.LLM(
            model=str(model_path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0},  # image-only: no video profiling
            seed=seed,
        )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions for each request, in request order."""
        return generate_in_batches(
            requests,
            max(1, self.batch_size // params.n),
            lambda batch, _batch_index, start: self._generate_call(batch, params, start),
            progress,
        )

    def _generate_call(
        self, batch: Sequence[GenerationRequest], params: SamplingParams, start: int
    ) -> list[list[Completion]]:
        """One `LLM.generate` call; `start` is the index of the batch's first request among all requests."""
        outputs = self.llm.generate(
            [self._prompt(r) for r in batch],
            [self._sampling(params, seed=params.seed + (start + i) * params.n) for i in range(len(batch))],
            use_tqdm=False,
        )
        return [[self._completion(sample) for sample in out.outputs] for out in outputs]

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """The token ids vLLM feeds the model for each request, its image placeholders expanded by vLLM."""
        outputs = self.llm.generate(
            [self._prompt(r) for r in requests],
            self._vllm.SamplingParams(max_tokens=1, detokenize=False),
            use_tqdm=False,
        )
        return [list(out.prompt_token_ids) for out in outputs]

    def _prompt(self, request: GenerationRequest) -> dict[str, Any]:
        prompt: dict[str, Any] = {"prompt": chat_prompt(self.processor, request)}
        if request.images:
            prompt["multi_modal_data"] = {"image": list(request.images)}
        return prompt

    def _sampling(self, params: SamplingParams, seed: int) -> Any:
        return self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0,  # off, as in HFEngine
            seed=seed,
            max_tokens=params.max_new_tokens,
            detokenize=False,  # decoded below with the checkpoint's tokenizer, as HFEngine does
        )

    def _completion(self, sample: Any) -> Completion:
        if sample.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended a sample with finish_reason={sample.finish_reason!r}; see vLLM's log above")
        ids = list(sample.token_ids)  # vLLM keeps the eos it stopped on, as HFEngine counts it
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(ids), finish_reason=sample.finish_reason)
