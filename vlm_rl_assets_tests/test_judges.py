import pytest

from vlm_rl_assets.core.judges import edit_similarity, judge


@pytest.mark.parametrize(
    "response, answer, correct",
    [
        ("I count the shapes: one, two. Answer: 2", "2", True),
        ("I count the shapes: one, two. Answer: 3", "2", False),
        ("Answer: 1,000", "1000", True),
        ("two", "2", False),  # no digit: not silently right
        ("", "2", False),
    ],
)
def test_number(response, answer, correct):
    assert judge("number", response, answer, []).correct is correct


@pytest.mark.parametrize(
    "response, correct",
    [
        ("The shape has 3 corners, so it is a triangle. Answer: (C)", True),
        ("Answer: C", True),
        ("so it is (C)", True),
        ("A triangle, so it is (B). Answer: (C)", True),  # the final answer counts
        ("A triangle", False),  # 'A' is an article, not option A
        ("Answer: (A)", False),
    ],
)
def test_choice(response, correct):
    assert judge("choice", response, "C", []).correct is correct


def test_text_scores_partial_similarity_but_only_exact_is_correct():
    assert judge("text", "Red.", "red", []).correct
    near = judge("text", "reed", "red", [])
    assert not near.correct and 0.5 < near.score < 1


def test_structured_gives_field_credit():
    answer = "colour: red; shape: circle; size: large; position: top left"
    verdict = judge("structured", "colour: red; shape: square; size: large; position: top left", answer, [])
    assert verdict.score == 0.75 and not verdict.correct and "shape" in verdict.reason
    assert judge("structured", answer, answer, []).correct


def test_scene_penalises_misses_and_hallucinations():
    truth = ["red circle", "blue square"]
    assert judge("open", "The image shows a blue square and a red circle.", "", truth).correct
    missed = judge("open", "The image shows a red circle.", "", truth)
    hallucinated = judge("open", "A red circle, a blue square and a green cross.", "", truth)
    assert missed.score == 0.5 and hallucinated.score == pytest.approx(2 / 3)
    assert "green cross" in hallucinated.reason


def test_edit_similarity_bounds():
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("abc", "xyz") == 0.0


def test_unknown_answer_type_raises():
    with pytest.raises(ValueError, match="no rule judge"):
        judge("audio", "x", "y", [])
