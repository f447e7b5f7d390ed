"""VLLMEngine: the `HFEngine` contract on vLLM's offline `LLM`, for rollouts on GPUs (and, in CI, on vLLM's CPU build).

vLLM is an optional extra (`pip install '.[vllm]'`, CUDA; CI installs its CPU build beside the project) imported only
when this engine is opened, so the hf path never needs it. Prompts are the text `HFEngine` and the trainers see (the
checkpoint's chat template over `chat.user_message`); vLLM expands each image placeholder itself,
which `preflight.py` compares with the DPO trainer's tokenization before a rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from vlm_rl_assets.model.loading import checkpoint_dtype
from vlm_rl_assets.rollouts.engine import (
    Completion,
    Engine,
    GenerationRequest,
    SamplingParams,
    chat_prompt,
    generate_in_batches,
)
from vlm_rl_assets.rollouts.settings import EngineSettings
from vlm_rl_assets.rollouts.vllm_orphans import reap_orphaned_engines

VLLM_MISSING = (
    "engine.kind is vllm but vLLM is not installed: pip install '.[vllm]' on a GPU machine, or set engine.kind: hf"
)


def llm_arguments(
    model_path: str | Path, settings: EngineSettings, *, on_cpu: bool = False, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments `VLLMEngine` gives `vllm.LLM` (a pure function: checked without vLLM).

    dtype is the checkpoint's, which transformers loads for the HF engine and the trainers: vLLM's own "auto" turns a
    float32 checkpoint into bfloat16, so its rollouts would come from another policy than the one DPO trains.
    `on_cpu` (vLLM's CPU build) turns chunked prefill off: a prompt prefilled over several steps has its seeded
    sampler's draw rewound by moving the generator's offset, which only CUDA generators have, so a seeded call longer
    than one step's token budget kills the engine ("CPU Generator does not use offset"; vLLM #10097 notes the rewind
    relies on CUDA's generator). Unchunked, each prompt is prefilled in one step and nothing is rewound.
    """
    arguments: dict[str, Any] = {
        "model": str(model_path),
        "dtype": checkpoint_dtype(model_path),
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "limit_mm_per_prompt": {"image": settings.max_images_per_prompt, "video": 0},  # image-only: no video profiling
        "seed": settings.seed,
        "enforce_eager": settings.vllm_enforce_eager,
    }
    if on_cpu:
        arguments["enable_chunked_prefill"] = False
    if settings.vllm_kv_cache_gib is not None:  # vLLM then sizes the cache by this, not by gpu_memory_utilization
        arguments["kv_cache_memory_bytes"] = round(settings.vllm_kv_cache_gib * 2**30)
    return arguments | overrides


class VLLMEngine(Engine):
    """vLLM's offline `LLM`: continuous batching, tensor parallel; CUDA, or its CPU build.

    Each `generate` is one `LLM.generate` call over all its requests (a rollout shard), which vLLM schedules itself:
    cut into `HFEngine`'s batches, its continuous batching would idle at each cut.
    Sample j of request i is seeded with `seed + i * n + j` (vLLM seeds the j-th of a request's n
    samples with its seed + j), so no two samples share a seed and none depends on batching. Text is
    decoded with the checkpoint's tokenizer as `HFEngine` does; eos is counted in `n_tokens`.
    """

    name = "vllm"

    def __init__(self, model_path: str | Path, settings: EngineSettings, **llm_overrides: Any) -> None:
        """`llm_overrides`: further `vllm.LLM` arguments (the tests turn prefix caching off)."""
        if find_spec("vllm") is None:
            raise ImportError(VLLM_MISSING)
        import vllm  # heavy, and absent without the extra: imported when the engine opens
        from vllm.platforms import current_platform

        from vlm_rl_assets.model.loading import load_processor

        reap_orphaned_engines()  # a killed run's engine would hold the memory this one needs
        self._vllm = vllm
        self.processor = load_processor(model_path)
        arguments = llm_arguments(model_path, settings, on_cpu=current_platform.is_cpu(), **llm_overrides)
        self.llm = vllm.LLM(**arguments)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions for each request, in request order."""
        return generate_in_batches(
            requests,
            self.prompts_per_call(len(requests)),
            lambda batch, _batch_index, start: self._generate_call(batch, params, start),
            progress,
        )

    @staticmethod
    def prompts_per_call(n_requests: int) -> int:
        """All of them: vLLM's scheduler fills the GPU from the whole queue."""
        return max(1, n_requests)

    def close(self) -> None:
        """Shut the engine core down (its process and the GPU memory it reserved), then free what is left here.

        Without it the engine core lives until garbage collection finds the `LLM` (it has no close; newer vLLMs add
        `shutdown`), and a second `LLM` opened before then is refused: the first still holds its share of the card.
        """
        if self.llm is None:
            return
        llm, self.llm = self.llm, None
        shutdown = getattr(llm, "shutdown", None) or llm.llm_engine.engine_core.shutdown  # LLM.shutdown in newer vLLM
        shutdown()
        del llm
        from vllm.distributed import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()  # model-parallel groups, gc.collect, torch.cuda.empty_cache

    def _generate_call(
        self, batch: Sequence[GenerationRequest], params: SamplingParams, start: int
    ) -> list[list[Completion]]:
        """One `LLM.generate` call; `start` is the index of the batch's first request among all requests."""
        outputs = self._open_llm().generate(
            [self._prompt(r) for r in batch],
            [self._sampling(params, seed=params.seed + (start + i) * params.n) for i in range(len(batch))],
            use_tqdm=False,
        )
        return [[self._completion(sample) for sample in out.outputs] for out in outputs]

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """The token ids vLLM feeds the model for each request, its image placeholders expanded by vLLM."""
        outputs = self._open_llm().generate(
            [self._prompt(r) for r in requests],
            self._vllm.SamplingParams(max_tokens=1, detokenize=False),
            use_tqdm=False,
        )
        return [list(out.prompt_token_ids) for out in outputs]

    def _open_llm(self) -> Any:
        if self.llm is None:
            raise RuntimeError("this VLLMEngine is closed: open a new engine to generate")
        return self.llm

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
