import pytest

from vlm_rl_assets.prompts.prompt_table import (
    AnswerKeyError,
    PromptSource,
    apply_template,
    build_prompt_table,
    open_question,
    reference_response,
)

CHOICE = PromptSource(
    "Which shape?\n(A) circle\n(B) square",
    "B",
    "choice",
    ("images/1.png",),
    ("circle", "square"),
    "It has 4 corners, so it is a square.",
)
LETTER_ONLY = "Answer with the option's letter from the given choices directly."


def test_cot_template_makes_choice_answers_long():
    assert apply_template("cot", "Which shape?", "choice").endswith("finish with 'Answer: (letter)'.")
    assert (
        reference_response("cot", CHOICE.answer, "choice", CHOICE.rationale)
        == "It has 4 corners, so it is a square. Answer: (B)"
    )
    assert reference_response("plain", CHOICE.answer, "choice", CHOICE.rationale) == "B"


def test_cot_on_an_open_answer_says_what_to_use():
    with pytest.raises(ValueError, match="use template 'plain'"):
        apply_template("cot", "Describe.", "open")


@pytest.mark.parametrize(
    ("question", "answer_type"),
    [
        (f"Which shape?\n(A) circle\n(B) square\n{LETTER_ONLY}", "choice"),
        ("What colour is the car? Answer with a single word.", "text"),
        ("How many dogs are there?\nAnswer the question using a single word or phrase.", "number"),
    ],
)
def test_cot_replaces_short_answer_instructions_plain_keeps_them(question, answer_type):
    body = question.rsplit("Answer", 1)[0].rstrip()
    cot = apply_template("cot", question, answer_type)
    assert cot.startswith(body) and "single" not in cot and "letter from" not in cot
    final = {"choice": "'Answer: (letter)'.", "text": "'Answer: your answer'.", "number": "'Answer: number'."}
    assert cot.endswith(f"finish with {final[answer_type]}")
    assert apply_template("plain", question, answer_type) == question


def test_multiple_choice_becomes_an_open_question_answered_by_the_option_text():
    opened = open_question(
        PromptSource(f"{CHOICE.question}\n{LETTER_ONLY}", "(B)", "choice", CHOICE.images, CHOICE.choices)
    )
    assert (opened.question, opened.answer, opened.answer_type, opened.choices) == (
        "Which shape?",
        "square",
        "text",
        (),
    )
    # options only in the question (no choices column): read from its option lines
    inline = open_question(PromptSource("Which?\nOptions:\nA. red car\nB. blue car", "A", "choice", ("i",)))
    assert (inline.question, inline.answer) == ("Which?", "red car")


@pytest.mark.parametrize("answer", ["C", "AB", ""])
def test_an_answer_key_that_names_no_option_is_refused(answer):
    with pytest.raises(AnswerKeyError, match="bad_answer_key"):
        open_question(PromptSource(CHOICE.question, answer, "choice", CHOICE.images, CHOICE.choices))


def test_rewrites_are_counted_and_bad_answer_keys_quarantined():
    bad = PromptSource("Which colour?\n(A) red\n(B) blue", "D", "choice", ("images/3.png",))
    short = PromptSource(
        "How many? Answer with a single word.", "2", "number", ("images/4.png",), rationale="One, two."
    )
    table = build_prompt_table("c", "cot", 3, {"train": [CHOICE, bad, short]}, mcq_to_open=True)
    assert table.rewrites == {"short_answer_instruction": 1, "mcq_to_open": 1}
    assert table.prompts["answer"].to_list() == ["square", "2"]
    assert table.prompts["reference"].to_list() == [
        "It has 4 corners, so it is a square. Answer: square",
        "One, two. Answer: 2",
    ]
    assert table.dropped["reason"].to_list() == ["bad_answer_key: 'D' names none of the 2 options"]


def test_short_references_duplicates_and_bench_overlap_are_dropped_and_counted():
    short = PromptSource("What colour?", "red", "text", ("images/2.png",))
    sources = {"bench": [CHOICE], "train": [CHOICE, short, short]}
    table = build_prompt_table("c", "cot", 3, {"bench": [CHOICE], "train": [CHOICE]})
    assert table.prompts["split"].to_list() == ["bench"] and table.dropped["reason"].to_list() == ["in_bench_split"]
    table = build_prompt_table("c", "plain", 1, sources)
    assert sorted(table.dropped["reason"]) == ["duplicate_prompt", "in_bench_split"]
    table = build_prompt_table("c", "plain", 2, {"train": [short]})
    assert table.prompts.is_empty() and table.dropped["reason"].to_list() == ["reference_shorter_than_2_words"]


def test_prompt_ids_are_stable_and_distinct():
    a = build_prompt_table("c", "plain", 1, {"train": [CHOICE]}).prompts
    b = build_prompt_table("c", "plain", 1, {"train": [CHOICE]}).prompts
    other = build_prompt_table("d", "plain", 1, {"train": [CHOICE]}).prompts
    assert a["prompt_id"].to_list() == b["prompt_id"].to_list() != other["prompt_id"].to_list()


def test_held_out_splits_own_overlaps_bench_before_dev_before_train():
    other = PromptSource("What colour?", "red", "text", ("images/2.png",))
    table = build_prompt_table("c", "plain", 1, {"train": [CHOICE, other], "dev": [CHOICE, other], "bench": [CHOICE]})
    assert dict(table.prompts.select("question", "split").iter_rows()) == {
        CHOICE.question: "bench",
        "What colour?": "dev",
    }
    assert sorted(table.dropped["reason"]) == ["in_bench_split", "in_bench_split", "in_dev_split"]


def test_bootstrap_rows_own_overlaps_with_train_and_give_way_to_held_out_splits():
    """A prompt the embedded base was SFT-trained on is never rolled out, and SFT never sees a dev or bench prompt."""
    other = PromptSource("What colour?", "red", "text", ("images/2.png",))
    table = build_prompt_table(
        "c", "plain", 1, {"train": [CHOICE, other], "bootstrap": [CHOICE, other], "dev": [CHOICE]}
    )
    assert dict(table.prompts.select("question", "split").iter_rows()) == {
        CHOICE.question: "dev",
        "What colour?": "bootstrap",
    }
    assert sorted(table.dropped["reason"]) == ["in_bootstrap_split", "in_dev_split", "in_dev_split"]


def test_the_reference_judge_needs_objects_so_rows_without_them_are_dropped_with_the_reason():
    scene = PromptSource("Describe the picture.", "a dog on a sofa", "open", ("images/5.png",), objects=("dog", "sofa"))
    bare = PromptSource("Describe this one.", "a cat", "open", ("images/6.png",))
    table = build_prompt_table("c", "plain", 1, {"train": [scene, bare]}, require_objects=True)
    assert table.prompts["objects"].to_list() == [["dog", "sofa"]]
    assert table.dropped["reason"].str.starts_with("no_objects").to_list() == [True]
    assert build_prompt_table("c", "plain", 1, {"train": [scene, bare]}).prompts.height == 2
