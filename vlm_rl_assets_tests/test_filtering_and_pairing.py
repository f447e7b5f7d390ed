import polars as pl
import pytest

from vlm_rl_assets.config import PipelineConfig
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.pairs.filtering import drop_counts, filter_rollouts, words
from vlm_rl_assets.pairs.pairing import Paired, make_pairs
from vlm_rl_assets.prompts.prompt_table import word_count
from vlm_rl_assets.rollouts.diversity import unique_fraction
from vlm_rl_assets.training.mixture import balanced_mixture
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table

PROMPTS = prompt_table({"a": ("number", "2"), "b": ("number", "1"), "c": ("number", "3")})
ROLLOUTS = rollout_table(
    {
        "a": [
            "I count: two. Answer: 2",
            "I count: two. Answer: 2",
            "I count: three. Answer: 3",
            "",
            "I count: one. Answer: 1",
        ],
        "b": ["I count: one. Answer: 1", "I count: one, two. Answer: 2"],
        "c": ["I count: one. Answer: 1", "I count: two. Answer: 2"],  # all wrong: nothing to learn
    }
)


def filtered() -> pl.DataFrame:
    return filter_rollouts(score_rollouts(ROLLOUTS, PROMPTS).scored, min_words=2)


def test_every_rollout_is_kept_or_dropped_with_a_reason():
    out = filtered()
    assert out.height == ROLLOUTS.height
    reasons = dict(zip(zip(out["prompt_id"], out["sample_idx"]), out["drop_reason"]))
    assert reasons[("a", 1)] == "duplicate" and reasons[("a", 0)] is None
    assert reasons[("a", 3)] == "too_short"
    assert reasons[("c", 0)] == reasons[("c", 1)] == "no_right_wrong_split"
    assert drop_counts(out) == {
        "kept": 5,
        "too_short": 1,
        "duplicate": 1,
        "low_diversity": 0,
        "no_right_wrong_split": 2,
    }


def test_orphan_rollouts_are_an_error():
    with pytest.raises(ValueError, match="absent from the prompt table"):
        score_rollouts(rollout_table({"zzz": ["Answer: 1"]}), PROMPTS)


def test_pairs_are_the_models_own_best_and_worst_samples():
    pairs = make_pairs(filtered(), PROMPTS, min_margin=0.5, max_pairs_per_prompt=1, beta=0.3, judge_name="rule").pairs
    assert pairs["prompt_id"].to_list() == ["a", "b"]
    first = pairs.row(0, named=True)
    assert first["chosen"] == "I count: two. Answer: 2" and first["chosen_score"] == 1.0
    assert first["rejected"] == "I count: one. Answer: 1" and first["margin"] == 1.0  # the last of the tied worst
    responses = set(ROLLOUTS["response"])
    assert set(pairs["chosen"]) <= responses and set(pairs["rejected"]) <= responses
    assert "2" not in set(pairs["chosen"])  # never the bare ground truth
    assert pairs["on_policy"].all() and (pairs["beta"] == 0.3).all()
    assert pairs["pair_id"].n_unique() == pairs.height


def test_several_pairs_per_prompt_only_while_the_margin_holds():
    pairs = make_pairs(filtered(), PROMPTS, min_margin=0.5, max_pairs_per_prompt=3, beta=0.1, judge_name="rule").pairs
    # group a keeps one right and two wrong: the second-best is wrong, so only one pair clears the margin
    assert pairs.filter(pl.col("prompt_id") == "a").height == 1
    assert make_pairs(
        filtered(), PROMPTS, min_margin=1.5, max_pairs_per_prompt=1, beta=0.1, judge_name="rule"
    ).pairs.is_empty()


def test_balanced_mixture_follows_weights_keeping_every_pair_and_repeating_the_scarce_ones_evenly():
    frame = lambda n, c: pl.DataFrame({"category": [c] * n, "pair_id": [f"{c}{i}" for i in range(n)]})  # noqa: E731
    pairs = {"x": frame(100, "x"), "y": frame(12, "y"), "z": frame(50, "z")}
    mixed = balanced_mixture(pairs, {"x": 2, "y": 1, "z": 0}, 0, max_repeat=8)
    assert dict(mixed.group_by("category").len().iter_rows()) == {"x": 100, "y": 50}  # x's 50 per unit of weight
    assert mixed.filter(pl.col("category") == "x")["pair_id"].n_unique() == 100  # none of the richest dropped
    repeats = mixed.filter(pl.col("category") == "y").group_by("pair_id").len()["len"]
    assert repeats.len() == 12 and set(repeats) == {4, 5}  # 50 = 4 whole copies of 12, then 2 more
    # at most max_repeat copies: y's 12 pairs make 24 at most, and x is sampled down to twice that
    capped = balanced_mixture(pairs, {"x": 2, "y": 1}, 0, max_repeat=2)
    assert dict(capped.group_by("category").len().iter_rows()) == {"x": 48, "y": 24}
    with pytest.raises(ValueError, match="no pairs"):
        balanced_mixture({"x": frame(0, "x")}, {"x": 1}, 0, max_repeat=8)


def scored_table(groups: dict[str, list[tuple[str, float]]]) -> pl.DataFrame:
    """Rollouts with given (response, score); correct when the score is 1."""
    scores = [score for samples in groups.values() for _, score in samples]
    table = rollout_table({pid: [text for text, _ in samples] for pid, samples in groups.items()})
    return table.with_columns(
        score=pl.Series(scores, dtype=pl.Float64), correct=pl.Series(scores) == 1.0, judge_reason=pl.lit("test")
    )


def test_word_counts_are_exactly_python_split():
    texts = ["", "  a\tb\nc ", "a\xa0b", "a\x1cb\x1fc", "a\u3000b\u2009c", "one", "x  y"]
    counted = pl.DataFrame({"response": texts}).select(words("response"))["response"].to_list()
    assert counted == [word_count(t) for t in texts]


def test_low_diversity_groups_are_dropped_after_row_reasons():
    scored = scored_table(
        {
            "d": [
                ("Answer: 2", 1.0),
                ("Answer: 2", 1.0),
                ("Answer: 2", 1.0),
                ("Answer: 3", 0.0),
            ],  # unique fraction 0.5
            "e": [("Answer: 2", 1.0), ("Answer: 3", 0.0), ("Answer: 4", 0.0), ("Answer: 5", 0.0)],
        }
    )
    out = filter_rollouts(scored, min_words=1, min_group_diversity=0.6)
    assert out["drop_reason"].to_list() == [
        "low_diversity",
        "duplicate",
        "duplicate",
        "low_diversity",
        None,
        None,
        None,
        None,
    ]
    assert drop_counts(out) == {
        "kept": 4,
        "too_short": 0,
        "duplicate": 2,
        "low_diversity": 2,
        "no_right_wrong_split": 0,
    }
    assert unique_fraction(scored.filter(pl.col("prompt_id") == "d")["response"].to_list()) == 0.5
    at_threshold = filter_rollouts(scored, min_words=1, min_group_diversity=0.5)  # not below: kept
    assert drop_counts(at_threshold)["low_diversity"] == 0


# six distinct samples: best order 0, 1, 4, 2, 3, 5; worst order 2, 3, 5, 4, 0, 1
GROUP = scored_table(
    {
        "p": [
            ("a b c d", 1.0),
            ("a b", 1.0),
            ("x y z w v u t s", 0.0),
            ("x y", 0.0),
            ("m n o", 0.5),
            ("q r s t", 0.0),
        ],
        "q": [("right one", 1.0), ("half way", 0.5), ("wrong one", 0.0)],  # odd: the middle is never paired
    }
)
PAIR_PROMPTS = prompt_table({"p": ("number", "1"), "q": ("number", "1")}).with_columns(
    reference=pl.lit("the reference answer")
)
SAMPLE_IDX = {**dict(zip(GROUP["response"], GROUP["sample_idx"])), "the reference answer": -1}  # responses are distinct


def sample_pairs(pairs: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(prompt_id, chosen sample_idx, rejected sample_idx), -1 for the reference."""
    rows = pairs.select("prompt_id", "chosen", "rejected").rows()
    return [(pid, SAMPLE_IDX[chosen], SAMPLE_IDX[rejected]) for pid, chosen, rejected in rows]


def paired(min_margin: float, max_pairs: int, **policy) -> Paired:
    kept = filter_rollouts(GROUP, min_words=1)
    return make_pairs(
        kept, PAIR_PROMPTS, min_margin=min_margin, max_pairs_per_prompt=max_pairs, beta=0.1, judge_name="rule", **policy
    )


def pair(min_margin: float, max_pairs: int, **policy) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
    result = paired(min_margin, max_pairs, **policy)
    return sample_pairs(result.pairs), result.dropped


def dropped(below_margin: int = 0, length_unbalanced: int = 0, same_text: int = 0) -> dict[str, int]:
    return {"same_text": same_text, "below_margin": below_margin, "length_unbalanced": length_unbalanced}


def test_best_vs_worst_pairs_with_margin_and_count_limits():
    # one order, best first (ties by sample_idx): 0, 1, 4, 2, 3, 5; the worst are taken from its end: 5, 3, 2
    assert pair(0.5, 3) == ([("p", 0, 5), ("p", 1, 3), ("p", 4, 2), ("q", 0, 2)], dropped())
    assert pair(0.6, 3) == ([("p", 0, 5), ("p", 1, 3), ("q", 0, 2)], dropped(below_margin=1))
    assert pair(0.5, 1)[0] == [("p", 0, 5), ("q", 0, 2)]


def kept_table(groups: dict[str, list[tuple[str, float]]]) -> pl.DataFrame:
    """Every row kept, as given (no filtering: duplicates stay)."""
    return scored_table(groups).with_columns(kept=pl.lit(True), drop_reason=pl.lit(None, dtype=pl.String))


def test_a_sample_is_never_paired_with_itself_even_among_tied_scores():
    tied = kept_table({"p": [("a", 1.0), ("b", 0.5), ("c", 0.5), ("d", 0.0)]})
    prompts = prompt_table({"p": ("number", "1")})
    with pytest.raises(ValueError, match="min_margin must be > 0"):  # at 0, the tied middle used to pair 'b' with 'b'
        make_pairs(tied, prompts, min_margin=0.0, max_pairs_per_prompt=2, beta=0.1, judge_name="rule")
    result = make_pairs(tied, prompts, min_margin=1e-9, max_pairs_per_prompt=2, beta=0.1, judge_name="rule")
    assert result.pairs.select("chosen", "rejected").rows() == [("a", "d")]
    assert result.dropped == dropped(below_margin=1)  # 'b' against 'c': two samples, tied


def test_identical_texts_never_pair_whatever_their_scores():
    same = kept_table({"p": [("Answer: 2", 1.0), ("Answer: 3", 0.5), ("Answer: 2", 0.0)]})
    prompts = prompt_table({"p": ("number", "2")}).with_columns(reference=pl.lit("Answer: 3"))
    policy = make_pairs(same, prompts, min_margin=0.5, max_pairs_per_prompt=1, beta=0.1, judge_name="rule")
    assert policy.pairs.is_empty() and policy.dropped == dropped(same_text=1)
    reference = make_pairs(
        same, prompts, min_margin=0.5, max_pairs_per_prompt=3, beta=0.1, judge_name="rule", chosen_source="ground_truth"
    )
    assert reference.pairs.select("chosen", "rejected").rows() == [("Answer: 3", "Answer: 2")]
    assert reference.dropped == dropped(same_text=1, below_margin=1)  # the reference against its copy scored 0.5


def test_min_margin_must_be_positive_in_the_config():
    categories = {"c": {"source": "synthetic:count"}}
    with pytest.raises(ValueError, match=r"min_margin[\s\S]*score the same[\s\S]*set pairing.min_margin above 0"):
        PipelineConfig.model_validate({"pairing": {"min_margin": 0}, "categories": categories})


def test_length_balanced_pairs_bound_the_word_ratio():
    # (4, 2) is 3 vs 8 words: ratio 2.67 > 2; (0, 5) is 4 vs 4 words
    assert pair(0.5, 3, max_length_ratio=2.0) == ([("p", 0, 5), ("p", 1, 3), ("q", 0, 2)], dropped(length_unbalanced=1))
    assert pair(0.5, 3, max_length_ratio=8 / 3)[1]["length_unbalanced"] == 0  # the bound is inclusive


def test_ground_truth_as_chosen_is_off_policy():
    result = paired(0.6, 4, chosen_source="ground_truth")
    pairs = result.pairs
    assert sample_pairs(pairs) == [("p", -1, 5), ("p", -1, 3), ("p", -1, 2), ("q", -1, 2)]
    assert result.dropped == dropped(below_margin=3)  # p's 4th worst (0.5), q's 0.5 and 1.0
    assert (pairs["chosen"] == "the reference answer").all() and not pairs["on_policy"].any()
    assert (pairs["chosen_score"] == 1.0).all()


def test_ground_truth_chosen_needs_the_ablation_flag():
    categories = {"c": {"source": "synthetic:count"}}
    with pytest.raises(ValueError, match="saturates.*ablation: true"):
        PipelineConfig.model_validate({"pairing": {"chosen_source": "ground_truth"}, "categories": categories})
    ablation = {"chosen_source": "ground_truth", "ablation": True}
    config = PipelineConfig.model_validate({"pairing": ablation, "categories": categories})
    assert config.pairing.chosen_source == "ground_truth"
