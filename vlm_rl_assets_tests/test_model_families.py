"""Bring your own model: the pipeline's model-facing steps on a tiny random-init checkpoint of each VLM family
transformers ships natively (`model_families.py`), as a user's save_pretrained folder.

Per family: pre-flight (the engine and the DPO trainer agree on the prompt tokens), sampled rollouts and a greedy
benchmark with the hf engine, reference log-probs, PairDPOTrainer's loss equal to stock TRL's on one batch, and a
few DPO steps with per-pair betas on the cached reference, whose output folder loads back.
"""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec
from pathlib import Path

import pytest

from vlm_rl_assets_tests import model_families
from vlm_rl_assets_tests.conftest import TINY_CORPUS
from vlm_rl_assets_tests.helpers import colour_pairs, loss_on, perturb, prompt_table

NEEDS_TORCHVISION = pytest.mark.skipif(find_spec("torchvision") is None, reason="needs torchvision")
FAMILIES = [
    "qwen2_vl",  # the embedded default's architecture: the session's tiny_vlm_dir
    model_families.QWEN2_5_VL,
    model_families.QWEN3_VL,
    model_families.LLAVA_ONEVISION,
    model_families.GEMMA3,
    model_families.INTERNVL,
    pytest.param(
        model_families.IDEFICS3,
        marks=pytest.mark.skipif(
            find_spec("torchvision") is None,
            reason="transformers 5.17 refuses to load Idefics3/SmolVLM's PIL image processor without torchvision "
            "(its docstrings name TorchvisionBackend, which its import-structure scan reads as a dependency)",
        ),
    ),
    pytest.param(
        model_families.MISTRAL3,
        marks=pytest.mark.skipif(
            find_spec("torchvision") is None, reason="PixtralProcessor (Mistral 3's) imports torchvision"
        ),
    ),
]


def _name(family) -> str:
    return family if isinstance(family, str) else family.name


@pytest.fixture(scope="module", params=FAMILIES, ids=_name)
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_vlm_dir: Path) -> Path:
    if request.param == "qwen2_vl":
        return tiny_vlm_dir
    return model_families.build_family(request.param, tmp_path_factory.mktemp(request.param.name), list(TINY_CORPUS))


@pytest.fixture(scope="module")
def pairs():
    return colour_pairs(4, seed=3)


def test_preflight_rollouts_and_greedy_benchmark(family_dir: Path, pairs) -> None:
    from vlm_rl_assets.evaluation.benchmarks import greedy_verdicts
    from vlm_rl_assets.model.settings import ModelSettings
    from vlm_rl_assets.rollouts.engine import SamplingParams
    from vlm_rl_assets.rollouts.open import open_checked_engine
    from vlm_rl_assets.rollouts.settings import EngineSettings

    logged: list[str] = []
    prompts = [p.prompt_text for p in pairs]
    with open_checked_engine(
        EngineSettings(batch_size=4), ModelSettings(), family_dir, prompts, [p.images for p in pairs], logged.append
    ) as engine:
        sampled = engine.generate(engine_requests(pairs), SamplingParams(n=2, max_new_tokens=6, seed=1))
        table = prompt_table({str(i): ("text", "red") for i in range(len(pairs))})
        bench = greedy_verdicts(engine, table, [p.images for p in pairs], max_new_tokens=6)
    assert logged == [f"pre-flight: the hf engine and the DPO trainer agree on {len(pairs)} sampled prompts"]
    assert [len(samples) for samples in sampled] == [2] * len(pairs)
    assert all(1 <= c.n_tokens <= 6 for samples in sampled for c in samples)
    assert len(bench) == len(pairs) and bench["score"].is_not_null().all()


def engine_requests(pairs):
    from vlm_rl_assets.rollouts.engine import GenerationRequest

    return [GenerationRequest(p.prompt_text, p.images) for p in pairs]


def test_dpo_loss_is_stock_trls(family_dir: Path, pairs, tmp_path: Path) -> None:
    """PairDPOTrainer (pretokenized batches, each image encoded once, per-pair betas) gives stock TRL's loss on one
    batch when every pair has TRL's beta."""
    import torch
    from trl import DPOConfig, DPOTrainer

    from vlm_rl_assets.dpo.training import dpo_trainer
    from vlm_rl_assets.model.chat import preference_example
    from vlm_rl_assets.model.loading import load_model, load_processor
    from vlm_rl_assets.model.trainer import lazy_dataset
    from vlm_rl_assets.training.settings import TrainingSettings

    ours = dpo_trainer(family_dir, tmp_path, [dataclasses.replace(p, beta=0.3) for p in pairs], TrainingSettings())
    config = DPOConfig(
        output_dir=str(tmp_path),
        beta=0.3,
        bf16=False,
        report_to="none",
        remove_unused_columns=False,
        gradient_checkpointing=False,
    )
    examples = [preference_example(p.prompt_text, p.images, p.chosen, p.rejected) for p in pairs]
    stock = DPOTrainer(
        model=load_model(family_dir),
        args=config,
        train_dataset=lazy_dataset(examples, dict),
        processing_class=load_processor(family_dir),
    )
    for trainer in (ours, stock):
        perturb(trainer.model)
    ours.get_train_dataloader()  # tokenizes the examples once, where the processor's batches allow it
    expected = loss_on(stock, [dict(e) for e in examples])
    assert torch.allclose(
        loss_on(ours, [ours.train_dataset[i] for i in range(len(pairs))]), expected, atol=1e-5, rtol=0
    )


def test_dpo_steps_with_per_pair_betas_on_cached_reference(family_dir: Path, pairs, tmp_path: Path) -> None:
    import math

    from vlm_rl_assets.dpo.training import dpo_train, reference_logps
    from vlm_rl_assets.model.loading import load_model
    from vlm_rl_assets.training.settings import TrainingSettings

    refs = reference_logps(family_dir, pairs, batch_size=2)
    assert all(math.isfinite(c) and math.isfinite(r) and c < 0 and r < 0 for c, r in refs)
    trained = [
        dataclasses.replace(p, beta=beta, ref_chosen_logps=c, ref_rejected_logps=r)
        for p, beta, (c, r) in zip(pairs, (0.1, 0.5, 0.1, 0.5), refs)
    ]
    result = dpo_train(
        family_dir, tmp_path / "dpo", trained, TrainingSettings(batch_size=2, max_steps=2, learning_rate=1e-3)
    )
    assert result.steps == 2 and math.isfinite(result.final["loss"])
    before, after = load_model(family_dir).state_dict(), load_model(tmp_path / "dpo").state_dict()
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before)
