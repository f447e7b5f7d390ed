"""The reward-model judge on a tiny randomly initialised Qwen2 sequence classifier built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, Verdict
from vlm_rl_assets.judging.reward_judge import RewardModelJudge
from vlm_rl_assets.judging.settings import RewardModelSettings


@pytest.fixture(scope="module")
def reward_model_dir(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.normal_(std=0.3)  # logits of order 1: scores spread over (0, 1)
    out = tmp_path_factory.mktemp("reward_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


RESPONSES = ["Answer: 2", "The red circle is on the left, next to a blue square.", "Answer: (C)", "no", "Answer: yes"]


def items() -> list[JudgeItem]:
    return [
        JudgeItem(f"p/{i}", "p", "How many shapes are there?", response, "open", "2", "Answer: 2")
        for i, response in enumerate(RESPONSES)
    ]


def test_scores_are_probabilities_deterministic_and_batch_independent(reward_model_dir):
    batched = RewardModelJudge(RewardModelSettings(path=str(reward_model_dir), batch_size=4)).judge(items()).outcomes
    single = RewardModelJudge(RewardModelSettings(path=str(reward_model_dir), batch_size=1)).judge(items()).outcomes
    again = RewardModelJudge(RewardModelSettings(path=str(reward_model_dir), batch_size=4)).judge(items()).outcomes
    assert all(isinstance(v, Verdict) and 0.0 <= v.score <= 1.0 for v in batched)
    assert [v.score for v in batched] == [v.score for v in again]
    assert [v.score for v in batched] == pytest.approx([v.score for v in single], abs=1e-5)
    assert len({round(v.score, 4) for v in batched}) > 1  # it reads the response
    assert all(v.correct == (v.score >= 0.5) for v in batched)


def test_inputs_over_max_length_are_quarantined_not_truncated(reward_model_dir):
    long = JudgeItem("p/9", "p", "How many shapes are there?", "red circle " * 200, "open", "2", "Answer: 2")
    outcomes = (
        RewardModelJudge(RewardModelSettings(path=str(reward_model_dir), max_length=64))
        .judge([*items(), long])
        .outcomes
    )
    assert all(isinstance(v, Verdict) for v in outcomes[:-1])
    assert isinstance(outcomes[-1], JudgeFailure) and outcomes[-1].code == "reward_input_too_long"


def test_a_classifier_with_several_labels_is_refused(tiny_vlm_dir, tmp_path):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=3,
    )
    Qwen2ForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelJudge(RewardModelSettings(path=str(tmp_path))).judge(items())
