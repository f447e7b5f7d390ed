"""Opening the judge a category names (`categories.<c>.judge`) with its `judges:` settings."""

from __future__ import annotations

import os
from collections.abc import Callable

from PIL import Image

from vlm_rl_assets.judging.contract import RolloutJudge
from vlm_rl_assets.judging.reward_judge import RewardModelJudge
from vlm_rl_assets.judging.rules import RuleJudge
from vlm_rl_assets.judging.settings import JudgeKind, JudgesSettings
from vlm_rl_assets.judging.vlm_judge import VLMJudge
from vlm_rl_assets.model.settings import ModelSettings


def open_judge(
    kind: JudgeKind,
    judges: JudgesSettings,
    model: ModelSettings,
    load_image: Callable[[str], Image.Image],
    strict_format: bool = False,
) -> RolloutJudge:
    """The judge of `kind` (`strict_format`: the rule judges credit only a marked final answer). The VLM judge's
    API key comes only from the environment variable `judges.vlm.api_key_env` names, so it never lands in config
    or metadata."""
    if kind == "vlm":
        return VLMJudge(judges.vlm, load_image, api_key=os.environ.get(judges.vlm.api_key_env, ""))
    if kind == "reward_model":
        import torch  # heavy (~3 s): imported when a reward model judges, not when the code location loads

        torch.set_num_threads(model.torch_threads)
        return RewardModelJudge(judges.reward_model, device=model.device)
    return RuleJudge(judges.rule, name=kind, reference=judges.reference, strict_format=strict_format)
