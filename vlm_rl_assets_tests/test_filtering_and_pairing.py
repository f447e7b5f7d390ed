import polars as pl
import pytest

from vlm_rl_assets.core.filtering import drop_counts, filter_rollouts, score_rollouts
from vlm_rl_assets.core.mixture import balanced_mixture
from vlm_rl_assets.core.pairing import make_pairs
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table

PROMPTS = prompt_table({"a": ("number", "2"), "b": ("number", "1"), "c": ("number", "3")})
ROLLOUTS = rollout_table(
    {
        "a": ["I count: two. Answer: 2", "I count: two. Answer: 2", "I count: three. Answer: 3", "", "I count: one. Answer: 1"],
        "b": ["I count: one. Answer: 1", "I count: one, two. Answer: 2"],
        "c": ["I count: one. Answer: 1", "I count: two. Answer: 2"],  # all wrong: nothing to learn
    }
)


def filtered() -> pl.DataFrame:
    return filter_rollouts(score_rollouts(ROLLOUTS, PROMPTS), min_words=2)


def test_every_rollout_is_kept_or_dropped_with_a_reason():
    out = filtered()
    assert out.height == ROLLOUTS.height
    reasons = dict(zip(zip(out["prompt_id"], out["sample_idx"]), out["drop_reason"]))
    assert reasons[("a", 1)] == "duplicate" and reasons[("a", 0)] is None
    assert reasons[("a", 3)] == "too_short"
    assert reasons[("c", 0)] == reasons[("c", 1)] == "no_right_wrong_split"
    assert drop_counts(out) == {"kept": 5, "too_short": 1, "duplicate": 1, "no_right_wrong_split": 2}


def test_orphan_rollouts_are_an_error():
    with pytest.raises(ValueError, match="absent from the prompt table"):
        score_rollouts(rollout_table({"zzz": ["Answer: 1"]}), PROMPTS)


def test_pairs_are_the_models_own_best_and_worst_samples():
    pairs = make_pairs(filtered(), PROMPTS, min_margin=0.5, max_pairs_per_prompt=1, beta=0.3, judge_name="rule")
    assert pairs["prompt_id"].to_list() == ["a", "b"]
    first = pairs.row(0, named=True)
    assert first["chosen"] == "I count: two. Answer: 2" and first["chosen_score"] == 1.0
    assert first["rejected"] == "I count: three. Answer: 3" and first["margin"] == 1.0
    responses = set(ROLLOUTS["response"])
    assert set(pairs["chosen"]) <= responses and set(pairs["rejected"]) <= responses
    assert "2" not in set(pairs["chosen"])  # never the bare ground truth
    assert pairs["on_policy"].all() and (pairs["beta"] == 0.3).all()
    assert pairs["pair_id"].n_unique() == pairs.height


def test_several_pairs_per_prompt_only_while_the_margin_holds():
    pairs = make_pairs(filtered(), PROMPTS, min_margin=0.5, max_pairs_per_prompt=3, beta=0.1, judge_name="rule")
    # group a keeps one right and two wrong: the second-best is wrong, so only one pair clears the margin
    assert pairs.filter(pl.col("prompt_id") == "a").height == 1
    assert make_pairs(filtered(), PROMPTS, min_margin=1.5, max_pairs_per_prompt=1, beta=0.1, judge_name="rule").is_empty()


def test_balanced_mixture_follows_weights():
    frame = lambda n, c: pl.DataFrame({"category": [c] * n, "pair_id": [f"{c}{i}" for i in range(n)]})  # noqa: E731
    mixed = balanced_mixture({"x": frame(100, "x"), "y": frame(10, "y"), "z": frame(50, "z")}, {"x": 2, "y": 1, "z": 0}, 0)
    assert dict(mixed.group_by("category").len().iter_rows()) == {"x": 20, "y": 10}
    with pytest.raises(ValueError, match="no pairs"):
        balanced_mixture({"x": frame(0, "x")}, {"x": 1}, 0)
