import pytest

from vlm_rl_assets.core.prompts import PromptSource, apply_template, build_prompt_table, reference_response

CHOICE = PromptSource("Which shape?\n(A) circle\n(B) square", "B", "choice", ("images/1.png",), ("circle", "square"), "It has 4 corners, so it is a square.")


def test_cot_template_makes_choice_answers_long():
    assert apply_template("cot", "Which shape?", "choice").endswith("finish with 'Answer: (letter)'.")
    assert reference_response("cot", CHOICE.answer, "choice", CHOICE.rationale) == "It has 4 corners, so it is a square. Answer: (B)"
    assert reference_response("plain", CHOICE.answer, "choice", CHOICE.rationale) == "B"


def test_cot_on_an_open_answer_says_what_to_use():
    with pytest.raises(ValueError, match="use template 'plain'"):
        apply_template("cot", "Describe.", "open")


def test_short_references_duplicates_and_bench_overlap_are_dropped_and_counted():
    short = PromptSource("What colour?", "red", "text", ("images/2.png",))
    sources = {"bench": [CHOICE], "train": [CHOICE, short, short]}
    prompts, dropped = build_prompt_table("c", "cot", 3, {"bench": [CHOICE], "train": [CHOICE]})
    assert prompts["split"].to_list() == ["bench"] and dropped["reason"].to_list() == ["in_bench_split"]
    prompts, dropped = build_prompt_table("c", "plain", 1, sources)
    assert sorted(dropped["reason"]) == ["duplicate_prompt", "in_bench_split"]
    prompts, dropped = build_prompt_table("c", "plain", 2, {"train": [short]})
    assert prompts.is_empty() and dropped["reason"].to_list() == ["reference_shorter_than_2_words"]


def test_prompt_ids_are_stable_and_distinct():
    a, _ = build_prompt_table("c", "plain", 1, {"train": [CHOICE]})
    b, _ = build_prompt_table("c", "plain", 1, {"train": [CHOICE]})
    other, _ = build_prompt_table("d", "plain", 1, {"train": [CHOICE]})
    assert a["prompt_id"].to_list() == b["prompt_id"].to_list() != other["prompt_id"].to_list()
