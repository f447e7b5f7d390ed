import polars as pl
import pytest

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem
from vlm_rl_assets.judging.rules import RuleJudge, edit_similarity, judge
from vlm_rl_assets.judging.scoring import score_rollouts
from vlm_rl_assets.judging.settings import ReferenceSettings, RuleSettings
from vlm_rl_assets_tests.helpers import prompt_table, rollout_table


@pytest.mark.parametrize(
    "response, answer, correct",
    [
        ("I count the shapes: one, two. Answer: 2", "2", True),
        ("I count the shapes: one, two. Answer: 3", "2", False),
        ("Answer: 1,000", "1000", True),
        ("two", "2", True),  # number words are numbers (VQAv2's answer processor)
        ("many", "2", False),  # no number: not silently right
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


SCENE_VOCABULARY = ["red circle", "blue square", "green cross"]  # the objects of all the category's prompts


def test_scene_penalises_misses_and_hallucinations():
    def scene(response: str):
        return judge("open", response, "", ["red circle", "blue square"], vocabulary=SCENE_VOCABULARY)

    assert scene("The image shows a blue square and a red circle.").correct
    missed = scene("The image shows a red circle.")
    hallucinated = scene("A red circle, a blue square and a green cross.")
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
        ("Answer: 3 (two rows)", "3", False),  # number words are numbers: two of them, ambiguous
        ("I see 3 shapes", "3", True),  # free text naming one number
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
        ("Not a circle.", False),  # a negated option is not chosen
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


# Responses a policy could learn to game the rule judges with, for every answer type: each must NOT be
# credited, beside honest controls that stay credited. (answer_type, ground truth, response, strict_format)
SHAPE_OPTIONS = ["circle", "square", "triangle", "cross"]  # shape_choice's options: C is triangle
DESCRIBE = "colour: red; size: large; position: top left"
GAMING = {
    # number
    "number: hedge": ("number", "3", "Answer: 3 or 4", False, "ambiguous"),
    "number: either": ("number", "3", "I count them. Answer: either 3 or 4", False, "ambiguous"),
    "number: list": ("number", "3", "Answer: 1, 2, 3, 4", False, "ambiguous"),
    "number: free-text list": ("number", "3", "1 2 3 4 5 6", False, "ambiguous"),
    "number: free text, last number": ("number", "3", "I see 2 rows, so 3 shapes", False, "ambiguous"),
    "number: disagreeing answer lines": ("number", "3", "Answer: 4\nAnswer: 3", False, "ambiguous"),
    "number: answer line and box disagree": ("number", "3", "Answer: 3 \\boxed{4}", False, "ambiguous"),
    "number: negated other": ("number", "3", "Answer: 3, not 4", False, "ambiguous"),
    "number: rationale only (strict)": ("number", "3", "I count the shapes: one, two, three. So 3.", True, "format"),
    # choice
    "choice: echoed options": ("choice", "C", "(A) circle (B) square (C) triangle (D) cross", False, "ambiguous"),
    "choice: echoed options as answer": (
        "choice",
        "D",
        "Answer: (A) circle (B) square (C) triangle (D) cross",
        False,
        "ambiguous",
    ),
    "choice: letter hedge": ("choice", "B", "Answer: (A) or (B)", False, "ambiguous"),
    "choice: bare letter hedge": ("choice", "B", "Answer: A or B", False, "ambiguous"),
    "choice: bare letter list": ("choice", "A", "Answer: A and C", False, "ambiguous"),
    "choice: bare letters": ("choice", "C", "Answer: A B C D", False, "ambiguous"),
    "choice: text hedge": ("choice", "C", "Answer: triangle or cross", False, "ambiguous"),
    "choice: every option text": (
        "choice",
        "D",
        "It could be a circle, a square, a triangle or a cross.",
        False,
        "ambiguous",
    ),
    "choice: disagreeing answer lines": ("choice", "C", "Answer: (C)\nAnswer: (D)", False, "ambiguous"),
    "choice: answer line and box disagree": ("choice", "C", "Answer: (C) \\boxed{D}", False, "ambiguous"),
    "choice: letter and other text": ("choice", "A", "Answer: (A) square", False, "ambiguous"),
    "choice: right and negated other": ("choice", "C", "Answer: a triangle, not a cross", False, "ambiguous"),
    "choice: negation in free text": ("choice", "A", "It is a square, not a circle.", False, "ambiguous"),
    "choice: only negated": ("choice", "A", "Answer: not a circle", False, "no option"),
    "choice: rationale only (strict)": (
        "choice",
        "C",
        "The shape has 3 corners, so it is a triangle (C).",
        True,
        "format",
    ),
    # text (colour, and shape_choice's mcq_to_open variant)
    "text: hedge": ("text", "dark red", "Answer: dark red or light red", False, "ambiguous"),
    "text: slash": ("text", "dark red", "dark red/light red", False, "ambiguous"),
    "text: list": ("text", "triangle", "circle, square, triangle, cross", False, "ambiguous"),
    "text: disagreeing answer lines": ("text", "dark red", "Answer: dark red\nAnswer: light blue", False, "ambiguous"),
    "text: rationale only (strict)": ("text", "triangle", "It has 3 corners, so it is a triangle.", True, "format"),
    # ocr
    "ocr: hedge": (
        "ocr",
        "the quick brown fox",
        "Answer: the quick brown fox or the quick brown box",
        False,
        "ambiguous",
    ),
    "ocr: disagreeing answer lines": (
        "ocr",
        "the quick brown fox",
        "Answer: the quick brown fox\nAnswer: the lazy dog",
        False,
        "ambiguous",
    ),
    "ocr: no answer line (strict)": ("ocr", "the quick brown fox", "It reads the quick brown fox.", True, "format"),
    # math
    "math: hedge": ("math", "4", "Answer: 3 or 4", False, "ambiguous"),
    "math: list": ("math", "4", "Answer: 1, 2, 3, 4", False, "ambiguous"),
    "math: free-text list": ("math", "4", "1 2 3 4", False, "ambiguous"),
    "math: free text, last number": ("math", "4", "I think 2, no wait, 4", False, "ambiguous"),
    "math: two boxes": ("math", "4", "\\boxed{3} \\boxed{4}", False, "ambiguous"),
    "math: answer line and box disagree": ("math", "4", "Answer: 3\nSo \\boxed{4}", False, "ambiguous"),
    "math: rationale only (strict)": ("math", "4", "2 + 2 = 4", True, "format"),
    # structured (describe)
    "structured: stuffed fields": (
        "structured",
        DESCRIBE,
        "colour: red; colour: blue; size: large; size: small; position: top left; position: bottom right",
        False,
        "ambiguous",
    ),
    "structured: hedged field": (
        "structured",
        DESCRIBE,
        "colour: red or blue; size: large; position: top left",
        False,
        "ambiguous",
    ),
    "structured: listed field": (
        "structured",
        DESCRIBE,
        "colour: red, blue, green; size: large; position: top left",
        False,
        "ambiguous",
    ),
    # open (scene): every object word of the vocabulary
    "open: every object": (
        "open",
        "",
        "A red circle, a blue square, a green cross, a yellow triangle and a purple circle.",
        False,
        "covered 1/1",
    ),
}
HONEST = {
    "number: cot": ("number", "3", "I count the shapes: one, two, three. Answer: 3", False),
    "number: plain": ("number", "3", "3", False),
    "number: agreeing answer lines": ("number", "3", "Answer: 3\nAnswer: 3", False),
    "number: answer line and box agree": ("number", "3", "Answer: 3 \\boxed{3}", False),
    "number: cot (strict)": ("number", "3", "I count the shapes: one, two, three. Answer: 3", True),
    "number: boxed (strict)": ("number", "3", "one, two, three: \\boxed{3}", True),
    "choice: cot": ("choice", "C", "The shape has 3 corners, so it is a triangle. Answer: (C)", False),
    "choice: letter and its text": ("choice", "C", "Answer: (C) triangle", False),
    "choice: plain letter": ("choice", "C", "C", False),
    "choice: option text": ("choice", "C", "Answer: triangle", False),
    "choice: free text": ("choice", "C", "It is a triangle.", False),
    "choice: article": ("choice", "C", "Answer: A triangle", False),
    "choice: cot (strict)": ("choice", "C", "The shape has 3 corners, so it is a triangle. Answer: (C)", True),
    "text: plain": ("text", "dark red", "dark red", False),
    "text: cot": ("text", "triangle", "The shape has 3 corners, so it is a triangle. Answer: triangle", True),
    "ocr: answer line": ("ocr", "the quick brown fox", "Answer: The quick brown fox.", True),
    "math: answer line": ("math", "4", "2 + 2 = 4. Answer: 4", True),
    "math: box": ("math", "4", "So \\boxed{4}", False),
    "math: free text naming only its result": ("math", "4", "The result is 4.", False),
    "structured: reference": ("structured", DESCRIBE, DESCRIBE, False),
    "structured: repeated same value": ("structured", DESCRIBE, f"{DESCRIBE}; colour: red", False),
    "open: reference": ("open", "", "The image shows a red circle on a grey background.", False),
}
SCENE_OBJECTS = ["red circle"]
ALL_SCENE_OBJECTS = [
    f"{colour} {shape}" for colour in ("red", "blue", "green", "yellow", "purple") for shape in SHAPE_OPTIONS
]


def rule_verdict(answer_type: str, answer: str, response: str, strict: bool):
    objects = SCENE_OBJECTS if answer_type == "open" else []
    choices = SHAPE_OPTIONS if answer_type == "choice" else []
    return judge(answer_type, response, answer, objects, choices, vocabulary=ALL_SCENE_OBJECTS, strict_format=strict)


@pytest.mark.parametrize("answer_type, answer, response, strict, reason", GAMING.values(), ids=GAMING.keys())
def test_gaming_responses_are_not_credited(answer_type, answer, response, strict, reason):
    verdict = rule_verdict(answer_type, answer, response, strict)
    assert not verdict.correct and verdict.reason.startswith(reason), verdict
    if reason in ("ambiguous", "format"):
        assert verdict.score == 0.0


@pytest.mark.parametrize("answer_type, answer, response, strict", HONEST.values(), ids=HONEST.keys())
def test_honest_responses_stay_credited(answer_type, answer, response, strict):
    verdict = rule_verdict(answer_type, answer, response, strict)
    assert verdict.correct and verdict.score == 1.0, verdict


def test_strict_format_reaches_the_rule_judge():
    item = JudgeItem(
        "p/0", "p", "How many? Think step by step, then finish with 'Answer: number'.", "So 3.", "number", "3", ""
    )
    assert RuleJudge().judge([item]).outcomes[0].correct
    assert RuleJudge(strict_format=True).judge([item]).outcomes[0].reason.startswith("format")


DOG_ROWS = {"p0": ["dog", "sofa"], "p1": ["cat", "table"], "p2": ["box"]}  # a real-world dataset's objects
REAL_WORLD = [
    ("p0", "A dog lies on a couch.", 1.0),  # couch: sofa
    ("p0", "Two dogs sleep on the sofas.", 1.0),  # plurals
    ("p0", "A dog on a sofa next to a lamp.", 1.0),  # lamp: in no row, so neither covered nor hallucinated
    ("p0", "A dog.", 0.5),  # sofa missed
    ("p0", "A cat on a sofa.", 1 / 3),  # cat is another row's object: hallucinated
    ("p0", "A dog, a sofa, a cat, a table and a box.", 2 / 5),  # every object word
    ("p0", "A hotdog on a catwalk.", 0.0),  # words inside other words are no mentions
    ("p2", "Three boxes.", 1.0),
    ("p1", "A cat under the tables.", 1.0),
]


@pytest.mark.parametrize("pid, response, score", REAL_WORLD)
def test_open_answers_on_real_world_words(pid, response, score):
    prompts = prompt_table({p: ("open", "") for p in DOG_ROWS}, category="photos").with_columns(
        objects=pl.Series([DOG_ROWS[p] for p in DOG_ROWS], dtype=pl.List(pl.String))
    )
    judge_ = RuleJudge(name="reference", reference=ReferenceSettings(synonyms={"Couch": "sofa"}))
    judged = score_rollouts(rollout_table({pid: [response]}), prompts, judge_)
    assert judged.scored["score"][0] == pytest.approx(score), judged.scored["judge_reason"][0]
    assert judged.scored["correct"][0] is (score == 1.0)


def test_an_open_row_without_objects_is_refused_not_scored():
    prompts = prompt_table({"p0": ("open", "A dog on a sofa.")}, category="photos")
    judged = score_rollouts(rollout_table({"p0": ["A dog on a sofa."]}), prompts, RuleJudge(name="reference"))
    assert judged.scored.is_empty()
    assert judged.failure_counts == {"no_objects": 1} and "objects" in judged.failures[0][1]


class CountingJudge:
    """The rule judge, keeping every item it was given; `pure` as told."""

    name = "rule"

    def __init__(self, pure: bool) -> None:
        self.pure, self.items = pure, []

    def judge(self, items):
        self.items += items
        return RuleJudge().judge(items)


@pytest.mark.parametrize("pure, judged", [(True, ["a/0", "a/2", "c/0", "d/0", "e/0", "f/0", "g/0"]), (False, None)])
def test_a_pure_judge_sees_each_distinct_input_once_and_other_judges_every_row(pure, judged):
    answers = {"a": ("number", "2"), "b": ("number", "2"), "c": ("number", "many")}
    answers |= {"d": ("choice", "A"), "e": ("choice", "A"), "f": ("open", "A scene."), "g": ("open", "A scene.")}
    prompts = prompt_table(answers).with_columns(  # d and e, f and g differ in their choices or objects only
        choices=pl.Series([[], [], [], ["circle", "square"], ["square", "circle"], [], []], dtype=pl.List(pl.String)),
        objects=pl.Series([[], [], [], [], [], ["dog"], ["cat"]], dtype=pl.List(pl.String)),
    )
    texts = {"a": ["Answer: 2", "Answer: 2", "Answer: 3"], "b": ["Answer: 2"], "c": ["2", "2"]}
    texts |= {"d": ["Answer: circle"], "e": ["Answer: circle"], "f": ["A dog."], "g": ["A dog."]}
    rollouts = rollout_table(texts)
    judge_ = CountingJudge(pure)
    result = score_rollouts(rollouts, prompts, judge_)
    every_row = [f"{pid}/{idx}" for pid, idx in rollouts.select("prompt_id", "sample_idx").rows()]
    assert [item.key for item in judge_.items] == (judged or every_row)  # b's ground truth and response are a's
    scores = result.scored.select("prompt_id", "sample_idx", "score").rows()
    assert scores == [
        ("a", 0, 1.0),
        ("a", 1, 1.0),
        ("a", 2, 0.0),
        ("b", 0, 1.0),
        ("d", 0, 1.0),
        ("e", 0, 0.0),
        ("f", 0, 1.0),
        ("g", 0, 0.0),
    ]
    assert [key for key, _ in result.failures] == ["c/0", "c/1"]  # every row of an unreadable ground truth
    assert result.failure_counts == {"answer_not_a_number": 2}


def test_only_the_rule_judges_are_pure():
    from vlm_rl_assets.judging.reward_judge import RewardModelJudge
    from vlm_rl_assets.judging.vlm_judge import VLMJudge

    assert RuleJudge.pure and not VLMJudge.pure and not RewardModelJudge.pure  # those see images or the prompt
