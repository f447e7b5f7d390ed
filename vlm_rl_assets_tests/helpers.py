"""Small table builders shared by the tests."""

import polars as pl

from vlm_rl_assets.core import schemas

S3_BUCKET = "pipeline"  # the bucket the `s3` fixture (conftest.py) creates on its moto server


def rollout_table(groups: dict[str, list[str]]) -> pl.DataFrame:
    rows = [
        {
            "prompt_id": pid,
            "sample_idx": idx,
            "response": text,
            "n_tokens": len(text.split()),
            "finish_reason": "stop",
            "policy_id": "p0",
            "engine": "hf",
            "seed": 0,
            "temperature": 1.0,
            "top_p": 1.0,
        }
        for pid, texts in groups.items()
        for idx, text in enumerate(texts)
    ]
    return pl.DataFrame(rows, schema=schemas.ROLLOUTS)


def prompt_table(answers: dict[str, tuple[str, str]], category: str = "count") -> pl.DataFrame:
    """answers: prompt_id -> (answer_type, answer)."""
    rows = [
        {
            "prompt_id": pid,
            "category": category,
            "split": "train",
            "question": "q",
            "prompt_text": f"question {pid}",
            "answer": answer,
            "answer_type": answer_type,
            "reference": answer,
            "choices": [],
            "images": [f"images/{pid}.png"],
            "objects": [],
        }
        for pid, (answer_type, answer) in answers.items()
    ]
    return pl.DataFrame(rows, schema=schemas.PROMPTS)
