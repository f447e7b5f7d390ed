import pytest

from vlm_rl_assets.judging.contract import JudgeFailure
from vlm_rl_assets.judging.rules import edit_similarity, judge
from vlm_rl_assets.judging.settings import RuleSettings


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
        ("C", True),  # a short-answer template's whole response
        (" C.", True),
        ("A", False),
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


@pytest.mark.parametrize(
    "response, answer, correct",
    [
        ("Answer: 1 000", "1000", True),  # space as thousands separator
        ("Answer: 1\u202f000\u202f000", "1000000", True),  # narrow no-break spaces
        ("Answer: 1,234.5", "1234.5", True),
        ("Answer: 12,5", "12.5", False),  # a decimal comma is not a thousands separator
        ("Answer: 12 cm", "12", True),  # a unit on one side only is ignored
        ("Answer: 12 cm", "12 cm", True),
        ("Answer: 0.12 m", "12 cm", True),  # same dimension: compared in base units
        ("Answer: 12 m", "12 cm", False),
        ("Answer: 12 kg", "12 cm", False),  # different dimensions never match
        ("Answer: 2 mins", "120 s", True),
        ("Answer: 2 mg", "1 mg", False),  # tolerances apply in the ground truth's unit, not in kg
        ("Answer: $5", "5", True),
        ("Answer: 5 dollars", "$5", True),
        ("Answer: $5 million", "5000000", True),
        ("Answer: 5 euros", "$5", False),
        ("Answer: 50%", "50", True),
        ("Answer: 50%", "0.5", True),  # a percentage also matches its fraction
        ("Answer: 0.5", "50%", True),
        ("Answer: 50 percent", "50%", True),
        ("Answer: \u22124", "-4", True),  # typographic minus
        ("Answer: 1.5e3", "1500", True),
        ("Answer: 3 (two rows)", "3", True),  # after 'Answer:' the first number counts
        ("I see 2 rows, so 3 shapes", "3", True),  # in free text the last one does
        ("Thus \\boxed{42}.", "42", True),
        ("Answer: 3 apples", "3", True),  # an unknown unit word is no unit
    ],
)
def test_number_tricky_cases(response, answer, correct):
    assert judge("number", response, answer, []).correct is correct


@pytest.mark.parametrize(
    "rel_tol, abs_tol, correct",
    [(0.0, 1e-6, False), (0.001, 0.0, True), (0.0, 0.01, True), (0.0, 0.001, False)],
)
def test_number_tolerance(rel_tol, abs_tol, correct):
    settings = RuleSettings(rel_tol=rel_tol, abs_tol=abs_tol)
    assert judge("number", "Answer: 3.14", "3.14159", [], settings=settings).correct is correct


def test_an_unreadable_number_ground_truth_is_a_judge_failure_not_a_zero():
    with pytest.raises(JudgeFailure, match="answer_not_a_number"):
        judge("number", "Answer: 2", "two or three", [])


OPTIONS = ["circle", "square", "triangle", "light blue square"]


@pytest.mark.parametrize(
    "response, correct",
    [
        ("Answer: (B)", True),
        ("Answer: B", True),
        ("Answer: square", True),  # the option's text
        ("Answer: Square.", True),
        ("It has 4 equal sides, so it is a square.", True),  # no answer line: the last option mentioned
        ("Not a circle: a square.", True),
        ("Answer: A square", True),  # 'A' is an article; the text decides
        ("Answer: I think B", True),  # 'I' is no option letter
        ("Answer: (A) square", False),  # an explicit letter wins over text
        ("Answer: circle", False),
        ("Answer: light blue square", False),  # the longer option that ends there: D
        ("\\boxed{B}", True),
        ("I cannot tell", False),
    ],
)
def test_choice_by_letter_or_option_text(response, correct):
    assert judge("choice", response, "B", [], OPTIONS).correct is correct


def test_choice_options_with_letter_prefixes_match_by_their_text():
    assert judge("choice", "Answer: triangle", "C", [], ["(A) circle", "B. square", "C) triangle"]).correct


@pytest.mark.parametrize(
    "response, answer, correct",
    [
        ("Answer: $2(x+1)$", "2x+2", True),
        ("Answer: 0.5", "\\frac{1}{2}", True),
        ("So the result is \\boxed{\\frac12}", "1/2", True),
        ("Answer: $2^{1/2}$", "\\sqrt{2}", True),
        ("Answer: $\\{2, 1\\}$", "\\{1,2\\}", True),
        ("Answer: $x = 2$", "2", True),
        ("Answer: 3", "4", False),
        ("I am not sure", "4", False),
    ],
)
def test_math_equivalence(response, answer, correct):
    assert judge("math", response, answer, []).correct is correct


def test_an_unparseable_math_ground_truth_is_a_judge_failure():
    with pytest.raises(JudgeFailure, match="math_answer_unparseable"):
        judge("math", "Answer: 1", "\\frac{", [])


@pytest.mark.parametrize(
    "response, correct, low, high",
    [
        ("Answer: The Quick  Brown FOX", True, 1.0, 1.0),  # case and whitespace runs do not count
        ("Answer: The quick brown f0x", True, 0.9, 0.99),  # one character off in 19
        ("Answer: The quick brown", False, 0.5, 0.9),
        ("Answer: nothing alike", False, 0.0, 0.5),
    ],
)
def test_ocr_scores_normalized_edit_similarity(response, correct, low, high):
    verdict = judge("ocr", response, "the quick brown fox", [])
    assert verdict.correct is correct and low <= verdict.score <= high


def test_scene_ignores_plurals_and_case():
    assert judge("open", "Two Red Circles and a blue square.", "", ["red circle", "blue square"]).correct
