"""The embedded base model's SFT data."""

from vlm_rl_assets.bootstrap.embedded import synthetic_split
from vlm_rl_assets.config import load_config
from vlm_rl_assets.prompts.prompt_table import COT_INSTRUCTIONS


def test_a_share_of_chain_of_thought_items_is_asked_plainly_with_the_short_answer():
    config = load_config()
    table, _, references = synthetic_split(config.synthetic_categories(), "sft", {"count": 400, "color": 50}, 0, short_answer_share=0.25)
    count = table.with_row_index().filter(table["category"] == "count")
    plain = [i for i, text in zip(count["index"], count["prompt_text"]) if COT_INSTRUCTIONS["number"] not in text]
    assert 60 <= len(plain) <= 140  # ~25% of 400
    assert all(references[i] == table["answer"][i] for i in plain)  # "2", not "I count ... Answer: 2"
    cot = set(count["index"]) - set(plain)
    assert all(references[i].endswith(f"Answer: {table['answer'][i]}") for i in cot)
    colour = table.filter(table["category"] == "color")
    assert colour["prompt_text"].to_list() == ["What colour is the shape?"] * 50  # plain categories unchanged
    again, _, _ = synthetic_split(config.synthetic_categories(), "sft", {"count": 400, "color": 50}, 0, short_answer_share=0.25)
    assert again.equals(table)  # deterministic
    none, _, _ = synthetic_split(config.synthetic_categories(), "sft", {"count": 400}, 0, short_answer_share=0.0)
    assert none["prompt_text"].str.contains("Think step by step").all()
