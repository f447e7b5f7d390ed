"""Rollout engines: sample completions for (prompt, images) requests from a saved VLM checkpoint.

The contract (`SamplingParams`, `GenerationRequest`, `Completion`, `Engine`) is engine-neutral so
`VLLMEngine` (`vllm_engine.py`) stands in for `HFEngine` on GPUs. Prompts are formatted with the
shared chat format and the checkpoint's own chat template, as TRL formats them for training
(`preflight.py` checks that the two agree token for token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from vlm_rl_assets import metering
from vlm_rl_assets.model.chat import user_message

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the GPU bench script also runs on older ones


MAX_TEMPERATURE = 2.0  # vLLM refuses a higher temperature; HF takes it, so one bound holds for both engines


def check_temperature(temperature: float) -> float:
    """A sampling temperature: above 0 (greedy decoding is asked for otherwise) and at most `MAX_TEMPERATURE`."""
    if not 0 < temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"a sampling temperature must be above 0 and at most {MAX_TEMPERATURE:g} (vLLM refuses higher ones), "
            f"got {temperature:g}"
        )
    return temperature


@dataclass(frozen=True)
class SamplingParams:
    n: int = 8  # samples per prompt
    temperature: float = 1.0  # 0 = greedy (then n must be 1)
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={self.n}, max_new_tokens={self.max_new_tokens}")
        if self.temperature != 0:  # 0: greedy
            check_temperature(self.temperature)
        if self.temperature == 0 and self.n > 1:
            raise ValueError(
                f"temperature=0 is greedy decoding, so its n={self.n} samples would be identical: "
                "set n=1, or set temperature > 0 to draw several different samples"
            )


@dataclass(frozen=True)
class GenerationRequest:
    prompt_text: str
    images: tuple[Image.Image, ...]


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int  # generated tokens, the eos included
    finish_reason: str  # "stop" (eos) | "length"


class Engine(Protocol):
    """What the rollout and benchmark stages need from an engine (`HFEngine`, `VLLMEngine`).

    An engine holds its model on the device until `close`; use it as a context manager so it is closed before the
    next one opens (vLLM reserves a share of the whole GPU per engine and refuses a second one beside it).
    """

    name: str

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]: ...

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]: ...

    def close(self) -> None:
        """Free the model and its device memory; the engine cannot generate after it. Closing twice is fine."""
        ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


BatchGenerator = Callable[[Sequence[GenerationRequest], int, int], list[list[Completion]]]
"""Completions for one batch of requests, given the batch, its index and its first request's index."""


def generate_in_batches(
    requests: Sequence[GenerationRequest],
    prompts_per_batch: int,
    generate_batch: BatchGenerator,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Completion]]:
    """The `generate` loop of every engine: `prompts_per_batch` requests per call, progress after each.

    Written once so the engines batch alike (and count their generated tokens alike); each seeds its samples from
    the indices it is given.
    """
    results: list[list[Completion]] = []
    for batch_index, start in enumerate(range(0, len(requests), prompts_per_batch)):
        batch = generate_batch(requests[start : start + prompts_per_batch], batch_index, start)
        metering.count(metering.GENERATED_TOKENS, sum(c.n_tokens for samples in batch for c in samples))
        results.extend(batch)
        if progress is not None:
            progress(len(results), len(requests))
    return results


def chat_prompt(processor: Any, request: GenerationRequest) -> str:
    """The request as the checkpoint's chat template renders it, one image placeholder per image."""
    return processor.apply_chat_template(
        [user_message(request.prompt_text, len(request.images))], add_generation_prompt=True
    )


class HFEngine(Engine):
    """transformers `generate`, batched (left padding), CPU or GPU.

    Each batch is seeded with `seed + batch index`, so a batch's samples do not depend on what ran
    before it in the process.
    """

    name = "hf"

    def __init__(self, model_path: str | Path, *, device: str = "cpu", batch_size: int = 32) -> None:
        from vlm_rl_assets.model.loading import load_model, load_processor

        self._setup(load_model(model_path, device), load_processor(model_path), device, batch_size)

    @classmethod
    def from_loaded(cls, model, processor, *, batch_size: int = 32) -> HFEngine:
        """An engine on a model already in memory (the held-out checks during SFT)."""
        engine = cls.__new__(cls)
        engine._setup(model, processor, str(model.device), batch_size)
        return engine

    def _setup(self, model, processor, device: str, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.processor = processor
        self.model = model
        self.device = device
        self.batch_size = batch_size  # sequences per generate call (prompts x n)
        self.eos_token_id: int = self.processor.tokenizer.eos_token_id
        self.pad_token_id: int = self.processor.tokenizer.pad_token_id

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions for each request, in request order."""
        return generate_in_batches(
            requests,
            self.prompts_per_call(self.batch_size, params.n),
            lambda batch, batch_index, _start: self._generate_batch(batch, params, seed=params.seed + batch_index),
            progress,
        )

    @staticmethod
    def prompts_per_call(batch_size: int, n: int) -> int:
        """`batch_size` sequences per `generate` call (at least one prompt): what fits the device at once."""
        return max(1, batch_size // n)

    def close(self) -> None:
        """Drop the model (an engine `from_loaded` drops only its own reference) and the device's cached memory."""
        from vlm_rl_assets.model.loading import release_memory

        self.model = None
        release_memory()

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """The token ids the model is fed for each request (image placeholders expanded), unpadded."""
        return [self._encode([r])["input_ids"][0].tolist() for r in requests]

    def _encode(self, batch: Sequence[GenerationRequest]) -> Any:
        images = [list(r.images) for r in batch]
        return self.processor(
            text=[chat_prompt(self.processor, r) for r in batch],
            images=images if any(images) else None,
            padding=True,
            padding_side="left",
            add_special_tokens=False,
            return_tensors="pt",
        ).to(self.device)

    def _generate_batch(
        self, batch: Sequence[GenerationRequest], params: SamplingParams, seed: int
    ) -> list[list[Completion]]:
        import torch

        if self.model is None:
            raise RuntimeError("this HFEngine is closed: open a new engine to generate")
        inputs = self._encode(batch)
        if params.temperature == 0:
            sampling = {"do_sample": False}
        else:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                **sampling,
                num_return_sequences=params.n,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
            )
        generated = out[:, inputs["input_ids"].shape[1] :].tolist()
        completions = [self._completion(ids) for ids in generated]
        return [completions[i : i + params.n] for i in range(0, len(completions), params.n)]

    def _completion(self, ids: list[int]) -> Completion:
        if self.eos_token_id in ids:
            ids = ids[: ids.index(self.eos_token_id) + 1]
            finish_reason = "stop"
        else:
            finish_reason = "length"
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(ids), finish_reason=finish_reason)
