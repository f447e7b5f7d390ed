"""The engine contract, run against every engine (`engine` fixture: HF, and vLLM where usable):
n seeded samples per prompt, greedy decoding, eos/length handling, progress per call.
Then HFEngine's own guarantees, and the error that says how to get vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm_rl_assets.rollouts.engine import Completion, Engine, GenerationRequest, HFEngine, SamplingParams

PROMPTS = ("What colour is the shape?", "How many shapes are there?", "Answer: (B)")


def _requests() -> list[GenerationRequest]:
    """Prompts of different lengths and image sizes, so batches need left padding."""
    sizes = [(112, 112), (64, 64), (90, 140)]
    colours = ["red", "green", "blue"]
    return [
        GenerationRequest(prompt, (Image.new("RGB", size, colour),))
        for prompt, size, colour in zip(PROMPTS, sizes, colours)
    ]


def _texts(results: list[list[Completion]]) -> list[list[str]]:
    return [[c.text for c in group] for group in results]


def test_returns_n_completions_per_prompt(engine: Engine) -> None:
    params = SamplingParams(n=4, max_new_tokens=6)
    results = engine.generate(_requests(), params)
    assert [len(group) for group in results] == [4, 4, 4]
    for completion in (c for group in results for c in group):
        assert 1 <= completion.n_tokens <= params.max_new_tokens
        # eos exactly at the last allowed token is a stop; only a full-length sample can be cut
        assert completion.finish_reason in ("stop", "length")
        assert completion.finish_reason == "stop" or completion.n_tokens == params.max_new_tokens


def test_sampling_is_seeded(engine: Engine) -> None:
    params = SamplingParams(n=4, max_new_tokens=6, seed=1)
    first = engine.generate(_requests(), params)
    engine.generate(_requests()[:1], SamplingParams(n=2, max_new_tokens=3, seed=7))  # consumes random numbers
    assert engine.generate(_requests(), params) == first
    other_seed = engine.generate(_requests(), SamplingParams(n=4, max_new_tokens=6, seed=2))
    assert _texts(other_seed) != _texts(first)
    assert all(len(set(texts)) > 1 for texts in _texts(first))  # a random model at T=1 varies


def test_greedy_is_deterministic(engine: Engine) -> None:
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8, seed=0)
    greedy = engine.generate(_requests(), params)
    assert engine.generate(_requests(), SamplingParams(n=1, temperature=0.0, max_new_tokens=8, seed=5)) == greedy


def test_progress_is_reported_per_generate_call(engine: Engine) -> None:
    calls: list[tuple[int, int]] = []
    engine.generate(
        _requests() * 2, SamplingParams(n=2, max_new_tokens=2), progress=lambda done, total: calls.append((done, total))
    )
    # hf: the fixture's 4 sequences per call, 2 prompts x 2 samples; vllm: every request in one call
    assert calls == {"hf": [(2, 6), (4, 6), (6, 6)], "vllm": [(6, 6)]}[engine.name]


def test_prompt_token_ids_expand_each_image(engine: Engine) -> None:
    image_token_id = 5  # <|image_pad|> in the tiny tokenizer (Qwen's special tokens come first)
    ids = engine.prompt_token_ids(_requests())
    # one token per 28x28 pixels once smart_resize rounds the sides to 28 within 56x56..112x112: 90x140 -> 84x140
    assert [row.count(image_token_id) for row in ids] == [16, 4, 15]


def test_greedy_with_several_samples_is_refused() -> None:
    with pytest.raises(ValueError, match="set n=1"):
        SamplingParams(n=4, temperature=0.0)


@pytest.fixture(scope="module")
def hf_engine(tiny_vlm_dir: Path) -> HFEngine:
    return HFEngine(tiny_vlm_dir)


def test_hf_greedy_is_independent_of_batching(hf_engine: HFEngine, tiny_vlm_dir: Path) -> None:
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8, seed=0)
    one_at_a_time = HFEngine(tiny_vlm_dir, batch_size=1).generate(_requests(), params)
    assert one_at_a_time == hf_engine.generate(_requests(), params)


def _force_eos_at_step(engine: HFEngine, step: int):
    """Make every row emit eos as its `step`-th generated token (1-based), whatever the weights."""
    calls = 0

    def hook(module, args, logits: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == step:
            logits[..., engine.eos_token_id] = torch.finfo(logits.dtype).max
        else:
            logits[..., engine.eos_token_id] = torch.finfo(logits.dtype).min
        return logits

    return engine.model.lm_head.register_forward_hook(hook)


def test_hf_eos_stops_a_completion_and_counts_as_a_token(hf_engine: HFEngine) -> None:
    requests = _requests()[:2]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    handle = _force_eos_at_step(hf_engine, step=3)
    try:
        stopped = hf_engine.generate(requests, params)
    finally:
        handle.remove()
    handle = _force_eos_at_step(hf_engine, step=0)  # never
    try:
        truncated = hf_engine.generate(requests, SamplingParams(n=1, temperature=0.0, max_new_tokens=2))
    finally:
        handle.remove()
    for [stop], [length] in zip(stopped, truncated):
        assert (stop.finish_reason, stop.n_tokens) == ("stop", 3)
        assert (length.finish_reason, length.n_tokens) == ("length", 2)
        assert stop.text == length.text  # the two tokens before eos; eos itself is not in the text


def test_vllm_kind_without_vllm_says_how_to_get_it(tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlm_rl_assets.model.settings import ModelSettings
    from vlm_rl_assets.rollouts import vllm_engine
    from vlm_rl_assets.rollouts.open import open_engine
    from vlm_rl_assets.rollouts.settings import EngineSettings

    monkeypatch.setattr(vllm_engine, "find_spec", lambda name: None)  # as on a machine without the extra
    with pytest.raises(ImportError, match=r"pip install '\.\[vllm\]' on a GPU machine, or set engine.kind: hf"):
        open_engine(EngineSettings(kind="vllm"), ModelSettings(), tiny_vlm_dir)
