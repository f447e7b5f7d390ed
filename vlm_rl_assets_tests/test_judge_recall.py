"""The rule judges credit honest answers as VLMs phrase them (full sentences, number words, markdown bold, trailing
periods, "The answer is ...", a chain of thought then the answer), and still refuse every gaming answer: the
battery of `test_judges.py` and the attempts the shared normalization could open ("three or 3", "a dozen or
eleven", "The answer is A. The answer is B.")."""

from __future__ import annotations

import pytest

from vlm_rl_assets.judging.gaming import gaming_patterns
from vlm_rl_assets.judging.normalize import normalize_answer, number_words_to_digits
from vlm_rl_assets.judging.rules import judge
from vlm_rl_assets_tests.test_judges import GAMING, SHAPE_OPTIONS, rule_verdict

# (answer_type, ground truth, response): what Qwen2-VL, LLaVA and InternVL answer when they are right
RECALL = [
    # number
    ("number", "3", "Answer: three"),
    ("number", "3", "There are three cats in the image."),
    ("number", "2", "two"),
    ("number", "0", "zero"),
    ("number", "11", "eleven"),
    ("number", "2", "There are 2 shapes in the image."),
    ("number", "3", "The image shows three shapes: a circle, a square and a triangle."),
    ("number", "3", "I count the shapes: one, two, three. The answer is 3."),
    ("number", "3", "**3**"),
    ("number", "3", "3."),
    ("number", "3", "The number of shapes in the image is 3."),
    ("number", "3", "Let me count the shapes one by one.\nThere are 3 shapes in total.\n\nAnswer: 3"),
    ("number", "1", "There is one shape in the image."),
    ("number", "12", "A dozen."),
    ("number", "2", "**Answer:** 2"),
    ("number", "0", "There are no shapes in the image."),
    ("number", "3", "There are 3 shapes; the red one is the largest."),
    # choice (options circle, square, triangle, cross)
    ("choice", "B", "The answer is B."),
    ("choice", "C", "The correct option is (C)."),
    ("choice", "B", "**B**"),
    ("choice", "B", "B."),
    ("choice", "C", "(C) triangle"),
    ("choice", "C", "The shape in the image is a triangle. Therefore, the correct answer is C."),
    ("choice", "D", "**Answer:** (D) cross"),
    ("choice", "A", "Option A."),
    ("choice", "A", "The image shows a red circle, so the answer is (A)."),
    ("choice", "C", "C. triangle"),
    ("choice", "B", "The shape is a square."),
    ("choice", "D", "The best option is **D**."),
    # text
    ("text", "dark red", "The colour is dark red."),
    ("text", "dark red", "It is dark red."),
    ("text", "red", "The car is red."),
    ("text", "dark red", "Dark red."),
    ("text", "light blue", "The shape is light blue in color."),
    ("text", "light green", "The color of the shape is **light green**."),
    ("text", "triangle", "It's a triangle."),
    ("text", "circle", "The shape looks like a circle."),
    ("text", "triangle", "The shape has three corners, so the answer is triangle."),
    ("text", "dark red", "Looking at the image, the shape is filled with a dark shade of red.\nAnswer: dark red"),
    ("text", "dark blue", "The color of the shape in the image is dark blue."),
    ("text", "light blue", "Light-blue"),
]

# What the normalization could open: number words beside digits, stated answers, bold, a sentence of candidates.
# (answer_type, ground truth, response, strict_format, reason the verdict starts with)
NEW_GAMING = {
    "number: word or digit": ("number", "3", "three or 3", False, "ambiguous"),
    "number: digit or word": ("number", "3", "Answer: 3 or three", False, "ambiguous"),
    "number: counting words": ("number", "3", "zero one two three four", False, "ambiguous"),
    "number: a dozen or eleven": ("number", "12", "a dozen or eleven", False, "ambiguous"),
    "number: words in a sentence": ("number", "3", "There are three or four cats.", False, "ambiguous"),
    "number: listed words": ("number", "3", "Answer: two, three", False, "ambiguous"),
    "number: digit and word": ("number", "3", "Answer: 3 (two rows)", False, "ambiguous"),
    "number: stated answers disagree": ("number", "3", "The answer is 3. The answer is 4.", False, "ambiguous"),
    "number: answer line and stated answer": ("number", "3", "Answer: 3\nThe answer is 4.", False, "ambiguous"),
    "number: bold hedge": ("number", "3", "**3** or **4**", False, "ambiguous"),
    "number: word hedge in parentheses": ("number", "3", "Answer: 3 (three or four)", False, "ambiguous"),
    "number: zero and a count": ("number", "0", "There are no cats but 2 dogs.", False, "ambiguous"),
    "choice: stated answers disagree": ("choice", "B", "The answer is A. The answer is B.", False, "ambiguous"),
    "choice: stated hedge": ("choice", "B", "The answer is B or C.", False, "ambiguous"),
    "choice: option hedge": ("choice", "A", "I would choose option A or B.", False, "ambiguous"),
    "choice: letter after an explicit one": ("choice", "A", "It is (A) or B.", False, "ambiguous"),
    "choice: every option": ("choice", "D", "Option A, B, C or D.", False, "ambiguous"),
    "choice: stated, right and negated other": (
        "choice",
        "B",
        "The correct option is (B), not (C).",
        False,
        "ambiguous",
    ),
    "choice: bold letters": ("choice", "B", "**A** or **B**", False, "no option"),
    "choice: bold hedge after answer": ("choice", "B", "Answer: **A** or **B**", False, "ambiguous"),
    "choice: stated answer, strict": ("choice", "B", "The answer is B.", True, "format"),
    "text: right and negated other": ("text", "dark red", "The car is dark red, not light blue", False, "ambiguous"),
    "text: bare hedge": ("text", "red", "red or blue", False, "ambiguous"),
    "text: other shade": ("text", "dark red", "It is light red.", False, "read"),
    "text: every colour listed": (
        "text",
        "dark red",
        "The colours are dark red, light red, dark blue and light blue.",
        False,
        "ambiguous",
    ),
    "text: every colour run together": (
        "text",
        "dark red",
        "It is dark red light red dark blue light blue dark green light green",
        False,
        "read",
    ),
    "text: two sentences, two colours": ("text", "dark red", "It is dark red. It is light red.", False, "read"),
    "text: stated answers disagree": (
        "text",
        "dark red",
        "The answer is dark red. The answer is light red.",
        False,
        "ambiguous",
    ),
    "text: bold hedge": ("text", "dark red", "**dark red** or **light red**", False, "ambiguous"),
    "text: hedge in a sentence": ("text", "dark red", "The shape is dark red or light red.", False, "ambiguous"),
    "text: slash in a sentence": ("text", "dark red", "The colour is dark red/light red.", False, "ambiguous"),
    "text: negated": ("text", "dark red", "It is not dark red.", False, "read"),
}
assert not GAMING.keys() & NEW_GAMING.keys()
BATTERY = GAMING | NEW_GAMING


@pytest.mark.parametrize("answer_type, answer, response", RECALL, ids=[f"{t}: {r}" for t, _, r in RECALL])
def test_honest_answers_are_credited(answer_type, answer, response):
    verdict = rule_verdict(answer_type, answer, response, False)
    assert verdict.correct and verdict.score == 1.0, verdict


@pytest.mark.parametrize("answer_type, answer, response, strict, reason", BATTERY.values(), ids=BATTERY.keys())
def test_gaming_answers_are_refused(answer_type, answer, response, strict, reason):
    verdict = rule_verdict(answer_type, answer, response, strict)
    assert not verdict.correct and verdict.reason.startswith(reason), verdict
    if reason in ("ambiguous", "format"):
        assert verdict.score == 0.0


def test_the_batteries_are_as_large_as_the_docs_say():
    assert (len(RECALL), len(BATTERY)) == (41, 75)  # README and docs/architecture.md quote these counts


@pytest.mark.parametrize(
    "response, answer_type, choices",
    [
        ("three or 3", "number", []),
        ("a dozen or eleven", "number", []),
        ("zero one two three four", "number", []),
        ("I would choose option A or B.", "choice", SHAPE_OPTIONS),
        ("It is (A) or B.", "choice", SHAPE_OPTIONS),
        ("The answer is A. The answer is B.", "choice", SHAPE_OPTIONS),
        ("The answer is 3. The answer is 4.", "number", []),
    ],
)
def test_the_hack_monitor_flags_the_new_attempts(response, answer_type, choices):
    assert gaming_patterns(response, answer_type, choices, max_words=None)


COLOURS = [f"{shade} {hue}" for shade in ("dark", "light") for hue in ("red", "green", "blue", "yellow", "purple")]
SHAPES = ["circle", "square", "triangle", "cross"]


@pytest.mark.parametrize(
    "answer, response, correct, reason",
    [
        ("dark red", "The shape is a dark red circle.", True, "read 'dark red'"),
        ("dark red", "The shape in this picture is dark red and round.", False, "ambiguous"),  # a list: rules unchanged
        ("dark red", "Dark red is the colour of the shape.", True, "read 'dark red'"),
        ("dark red", "Color: dark red", True, "read 'dark red'"),
        ("cross", "It's a cross shape.", True, "read 'cross'"),
        ("dark red", "The car is dark red not light blue", False, "ambiguous"),
        ("dark red", "It is dark red and it isn't light red", False, "ambiguous"),
        ("dark red", "dark red light red dark blue light blue dark green light green", False, "ambiguous"),
        ("dark red", "It is dark red. It is light red.", False, "ambiguous"),
        ("dark red", "It is light red.", False, "read 'light red'"),
        ("dark red", "It is not dark red.", False, "read"),
        ("dark red", "It is red.", False, "read"),  # no candidate named: the predicate, "red", is read
    ],
)
def test_with_the_categorys_answers_the_text_judge_reads_the_one_candidate_named(answer, response, correct, reason):
    candidates = COLOURS if answer in COLOURS else SHAPES
    verdict = judge("text", response, answer, [], answers=candidates)
    assert verdict.correct is correct and verdict.reason.startswith(reason), verdict


@pytest.mark.parametrize(
    "text, normal",
    [
        ("The colour is Dark-Red.", "colour is dark red"),
        ("Three", "3"),
        ("a dozen or eleven", "12 or 11"),
        ("It isnt a cat", "it isn't cat"),
        ("**B**", "b"),
        ("1,000 and 3.5.", "1000 and 3.5"),
        ("the red one", "red one"),  # a pronoun, not 1
        ("twenty-one", "twenty one"),  # a hyphenated number word is not misread as 20 and 1
    ],
)
def test_normalization_follows_the_vqav2_answer_processor(text, normal):
    assert normalize_answer(text) == normal


def test_number_words_become_digits_and_nothing_else_changes():
    assert number_words_to_digits("There are Three cats, none of them grey; each one is x**2") == (
        "There are 3 cats, 0 of them grey; each one is x**2"
    )
