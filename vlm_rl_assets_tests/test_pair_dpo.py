"""PairDPOTrainer against stock TRL: equal betas give TRL's loss, cached reference log-probs give the uncached loss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from vlm_rl_assets.dpo.collator import EXAMPLE_FIELDS
from vlm_rl_assets.dpo.settings import DPOSettings
from vlm_rl_assets.dpo.training import PreferencePair, dpo_trainer, reference_logps
from vlm_rl_assets.model.chat import preference_example
from vlm_rl_assets.model.loading import load_model, load_processor
from vlm_rl_assets.model.trainer import lazy_dataset
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets_tests.helpers import COLOURS, colour_pairs, loss_on, perturb


def _uneven_wrong(i: int) -> str:
    return " ".join(["Answer:"] + [COLOURS[(i + 1) % 5]] * (1 + i % 3))  # uneven lengths: padding matters


@pytest.fixture(scope="module")
def pairs() -> list[PreferencePair]:
    return colour_pairs(6, seed=1, rejected=_uneven_wrong)


def _examples(trainer, n: int) -> list[dict]:
    return [trainer.train_dataset[i] for i in range(n)]


@pytest.mark.parametrize("loss_type", [("sigmoid",), ("ipo",), ("sigmoid", "bco_pair", "sft"), ("aot",)])
def test_equal_betas_match_stock_trl(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path, loss_type: tuple[str, ...]
) -> None:
    ours, stock = _ours_and_stock(tiny_vlm_dir, tmp_path, pairs, loss_type)
    expected = loss_on(stock, [preference_example(p.prompt_text, p.images, p.chosen, p.rejected) for p in pairs])
    assert torch.allclose(loss_on(ours, _examples(ours, len(pairs))), expected, atol=1e-6, rtol=0)


def _ours_and_stock(
    model_dir: Path, tmp_path: Path, pairs: list[PreferencePair], loss_type: tuple[str, ...]
) -> tuple[DPOTrainer, DPOTrainer]:
    """PairDPOTrainer (examples tokenized) and stock TRL's DPOTrainer at beta 0.3, the same nudge to both policies."""
    settings, loss = TrainingSettings(batch_size=6), DPOSettings(loss_type=loss_type)
    ours = dpo_trainer(model_dir, tmp_path, [dataclasses.replace(p, beta=0.3) for p in pairs], settings, loss)
    config = DPOConfig(
        output_dir=str(tmp_path),
        beta=0.3,
        loss_type=list(loss_type),
        bf16=False,
        report_to="none",
        remove_unused_columns=False,
        gradient_checkpointing=False,
    )
    stock_data = lazy_dataset(pairs, lambda p: preference_example(p.prompt_text, p.images, p.chosen, p.rejected))
    stock = DPOTrainer(
        model=load_model(model_dir), args=config, train_dataset=stock_data, processing_class=load_processor(model_dir)
    )
    for trainer in (ours, stock):
        perturb(trainer.model)  # else policy == reference and every loss is its value at 0, whatever beta
    ours.get_train_dataloader()  # tokenizes the examples once: ours then batches them without TRL's collator
    return ours, stock


def test_the_shared_prompt_pass_gives_trls_gradients(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path
) -> None:
    """The prompt's keys and values reach both answers from one pass, with their gradients: every weight's gradient
    is stock TRL's."""
    ours, stock = _ours_and_stock(tiny_vlm_dir, tmp_path, pairs, ("sigmoid",))
    ours.compute_loss(ours.model, ours.data_collator(_examples(ours, len(pairs)))).backward()
    examples = [preference_example(p.prompt_text, p.images, p.chosen, p.rejected) for p in pairs]
    stock.compute_loss(stock.model, stock.data_collator(examples)).backward()
    expected = dict(stock.model.named_parameters())
    assert all(torch.allclose(p.grad, expected[n].grad, atol=1e-6, rtol=0) for n, p in ours.model.named_parameters())
    assert any(p.grad.abs().max() > 1e-3 for p in ours.model.parameters())


def test_each_pairs_prompt_runs_through_the_language_model_once(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path
) -> None:
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings())
    shapes: list[tuple[int, int]] = []
    record = lambda module, args, kwargs: shapes.append(kwargs["inputs_embeds"].shape[:2])  # noqa: E731
    trainer.model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    batch = trainer.data_collator(_examples(trainer, len(pairs)))
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
    rows, width = batch["input_ids"].shape
    [(prefix_rows, prefix), (tail_rows, tail)] = shapes  # the policy's; the reference is another copy
    assert (prefix_rows, tail_rows) == (rows // 2, rows) and prefix + tail <= width
    assert prefix > 0.6 * width  # the prompts (images included) are most of each row: run once per pair
    assert "forward" not in vars(trainer.model.model)  # the class's forward is back afterwards


def test_per_pair_beta_is_each_pairs_own(tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path) -> None:
    """A batch with betas (0.5, 0.1) has the mean loss of pair 0 trained at beta 0.5 and pair 1 at beta 0.1."""
    mixed = dpo_trainer(
        tiny_vlm_dir, tmp_path, [dataclasses.replace(p, beta=b) for p, b in zip(pairs, (0.5, 0.1))], TrainingSettings()
    )
    at = {
        b: dpo_trainer(tiny_vlm_dir, tmp_path, [dataclasses.replace(p, beta=b) for p in pairs[:2]], TrainingSettings())
        for b in (0.5, 0.1)
    }
    for trainer in (mixed, *at.values()):
        perturb(trainer.model)
    expected = (loss_on(at[0.5], [at[0.5].train_dataset[0]]) + loss_on(at[0.1], [at[0.1].train_dataset[1]])) / 2
    assert torch.allclose(loss_on(mixed, _examples(mixed, 2)), expected, atol=1e-5, rtol=0)
    assert mixed.beta == 0.1  # the run's beta is restored after each batch


@pytest.mark.parametrize("loss_type", [("aot",), ("sigmoid", "aot_unpaired")])
def test_sorted_losses_refuse_pairs_with_different_betas(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path, loss_type: tuple[str, ...]
) -> None:
    """aot sorts the batch's log-ratios: a sorted position is no one pair's, so it cannot take a pair's beta."""
    mixed = [dataclasses.replace(p, beta=b) for p, b in zip(pairs, (0.5, 0.1, 0.5))]
    with pytest.raises(ValueError, match=r"belongs to no one pair.*betas \[0.1, 0.5\]"):
        dpo_trainer(tiny_vlm_dir, tmp_path, mixed, TrainingSettings(), DPOSettings(loss_type=loss_type))


def test_cached_reference_matches_uncached_and_holds_one_model(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path
) -> None:
    refs = reference_logps(tiny_vlm_dir, pairs, batch_size=4)  # other batches than the loss: padding must not matter
    cached_pairs = [dataclasses.replace(p, ref_chosen_logps=c, ref_rejected_logps=r) for p, (c, r) in zip(pairs, refs)]
    settings, loss = TrainingSettings(), DPOSettings(loss_type=("sigmoid", "sft"))
    uncached = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, settings, loss)
    cached = dpo_trainer(tiny_vlm_dir, tmp_path, cached_pairs, settings, loss)

    assert cached.ref_model is None and uncached.ref_model is not None
    for trainer in (uncached, cached):
        perturb(trainer.model)
    expected = loss_on(uncached, _examples(uncached, len(pairs)))
    assert torch.allclose(loss_on(cached, _examples(cached, len(pairs))), expected, atol=1e-5, rtol=0)


def test_some_cached_pairs_are_refused(tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path) -> None:
    half = [dataclasses.replace(p, ref_chosen_logps=-1.0, ref_rejected_logps=-2.0) for p in pairs[:3]] + pairs[3:]
    with pytest.raises(ValueError, match="3 of 6 pairs lack reference log-probs"):
        dpo_trainer(tiny_vlm_dir, tmp_path, half, TrainingSettings())


def test_each_image_is_encoded_once_per_step(tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path) -> None:
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings())
    seen: list[int] = []
    trainer.model.model.visual.patch_embed.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    batch = trainer.data_collator(_examples(trainer, len(pairs)))
    trainer.compute_loss(trainer.model, batch)
    assert seen == [len(batch["pixel_values"]) // 2]  # the collator repeats each image for chosen and rejected
    assert "forward" not in vars(trainer.model.model.visual)  # the class's forward is back afterwards


@pytest.mark.parametrize("max_length", [None, 40])  # rows are 45 to 47 tokens: 40 truncates
def test_pretokenized_batches_equal_trls_collator(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path, max_length: int | None
) -> None:
    """After `get_train_dataloader` tokenized the examples once, a step's batch is built without TRL's collator, and
    every tensor equals the one TRL's collator builds (padding values included), also when truncating."""
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings())
    pretokenized = trainer.data_collator.inner
    pretokenized.inner = dataclasses.replace(pretokenized.inner, max_length=max_length)
    trl_collator = DataCollatorForVisionPreference(trainer.processing_class, max_length=max_length)
    trainer.get_train_dataloader()
    pretokenized.inner = _Refusing(pretokenized.inner)  # the batches below must not fall back to TRL's collator

    for order in ([5, 0, 3], [1, 2, 4, 0, 5, 3]):  # other batches than the pre-pass's: different padding widths
        ours = trainer.data_collator(_examples_at(trainer, order))
        expected = trl_collator([{k: e[k] for k in EXAMPLE_FIELDS} for e in _examples_at(trainer, order)])
        assert set(ours) == set(expected) | {"beta"}
        for name, tensor in expected.items():
            assert torch.equal(ours[name], tensor), name


def test_pretokenized_batch_gives_trlsloss_on(tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path) -> None:
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings(), DPOSettings(loss_type=("sigmoid", "sft")))
    perturb(trainer.model)
    via_trl = loss_on(trainer, _examples(trainer, len(pairs)))  # nothing tokenized yet: TRL's collator
    trainer.get_train_dataloader()
    assert torch.equal(loss_on(trainer, _examples(trainer, len(pairs))), via_trl)


def _examples_at(trainer, order: list[int]) -> list[dict]:
    return [trainer.train_dataset[i] for i in order]


class _Refusing:
    """Stands in for TRL's collator where it must not be called, keeping its settings readable."""

    def __init__(self, inner) -> None:
        self.processor, self.max_length = inner.processor, inner.max_length

    def __call__(self, examples):
        raise AssertionError("fell back to TRL's collator")


def test_lm_head_scores_completion_tokens_only(
    tiny_vlm_dir: Path, pairs: list[PreferencePair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CPU TRL scores every position; PairDPOTrainer only the labelled ones (the loss stays TRL's: see above)."""
    from trl.trainer import utils as trl_utils

    scored: list[int] = []
    kernel = trl_utils._ChunkedLogProbFunction

    class Counting:
        @staticmethod
        def apply(hidden, *args):
            scored.append(len(hidden))
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings())
    batch = trainer.data_collator(_examples(trainer, len(pairs)))
    trainer.compute_loss(trainer.model, batch)
    assert scored == [int(batch["completion_mask"][:, 1:].sum())] * 2  # the policy's forward and the reference's
    assert scored[0] < 0.5 * batch["input_ids"][:, 1:].numel()
