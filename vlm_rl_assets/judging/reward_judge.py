"""Reward-model judge: a transformers sequence-classification model with one logit scores responses.

Text only, on purpose: prompt and response go through the tokenizer's chat template (joined by a
newline where it has none) and the images are not shown, so it suits reward models trained on text
or categories whose prompt text carries what matters. The score is the logit's sigmoid, in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun, Verdict
from vlm_rl_assets.judging.settings import RewardModelSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def reward_text(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"{prompt}\n{response}"


class RewardModelJudge:
    name = "reward_model"
    pure = False  # it sees the prompt text

    def __init__(self, settings: RewardModelSettings, device: str = "cpu") -> None:
        self.settings, self.device = settings, device

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        s = self.settings
        tokenizer = AutoTokenizer.from_pretrained(s.path)
        model = AutoModelForSequenceClassification.from_pretrained(s.path).to(self.device).eval()
        if model.config.num_labels != 1:
            raise ValueError(
                f"judges.reward_model.path {s.path!r} has {model.config.num_labels} labels; a reward model "
                "outputs one logit (num_labels=1)"
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id  # the classifier reads each row's last non-pad token
        tokenizer.padding_side = "right"  # positions as unbatched: batched scores equal single ones
        special = not tokenizer.chat_template  # a chat template already holds the special tokens
        encoded = tokenizer(
            [reward_text(tokenizer, item.prompt_text, item.response) for item in items], add_special_tokens=special
        )["input_ids"]
        outcomes: dict[int, Verdict | JudgeFailure] = {
            i: JudgeFailure(
                "reward_input_too_long", f"{len(ids)} tokens > judges.reward_model.max_length={s.max_length}"
            )
            for i, ids in enumerate(encoded)
            if len(ids) > s.max_length
        }
        fits = [i for i in range(len(items)) if i not in outcomes]
        for start in range(0, len(fits), s.batch_size):
            batch = fits[start : start + s.batch_size]
            padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = model(**padded).logits[:, 0].float()
            for i, logit in zip(batch, logits.tolist()):
                outcomes[i] = self._verdict(logit)
        return JudgeRun([outcomes[i] for i in range(len(items))])

    def _verdict(self, logit: float) -> Verdict | JudgeFailure:
        if not math.isfinite(logit):
            return JudgeFailure("reward_not_finite", f"the reward model returned {logit}")
        score = 1 / (1 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1 + math.exp(logit))  # no overflow
        return Verdict(score, score >= self.settings.correct_at, f"reward logit {logit:.3f}")
