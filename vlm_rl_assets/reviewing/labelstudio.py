"""The review page's sample as Label Studio tasks, for teams that label there: one task per judged rollout of the
sampled prompts (the page's strata), the image inline as a data: URI, the judge's verdict shown beside the response.
`LABEL_CONFIG` is the labelling interface to give the Label Studio project. Its answers do not flow back here: the
judge_calibration check reads labels given on the review pages (labels.py), or a labels file
(`calibration_labels: <path>`, prompt_id, sample_idx and label columns) made from a Label Studio export."""

from __future__ import annotations

from collections.abc import Callable

from vlm_rl_assets.reviewing.pages import PER_STRATUM, ReviewTables, sampled_strata

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Header value="$question"/>
  <Text name="ground_truth" value="Ground truth: $ground_truth"/>
  <Text name="response" value="$response"/>
  <Text name="verdict" value="Judge: $verdict ($judge_reason)"/>
  <Choices name="label" toName="response" choice="single" required="true" showInLine="true">
    <Choice value="right"/>
    <Choice value="wrong"/>
  </Choices>
</View>"""


def labelstudio_tasks(
    tables: ReviewTables, read_image: Callable[[str], bytes], per_stratum: int = PER_STRATUM
) -> list[dict]:
    """Label Studio import JSON: `{"data": {...}}` per judged rollout of the sample; prompts gone from the prompt
    table are left out (there is no question to show)."""
    tasks = []
    for stratum in sampled_strata(tables, read_image, per_stratum):
        for card in stratum["cards"]:
            if card["prompt"] is None:
                continue
            image = next((image["src"] for image in card["images"] if "src" in image), "")
            for row in card["rollouts"]:
                if row["verdict"] is None:
                    continue
                data = {
                    "image": image,
                    "question": card["prompt"]["prompt_text"],
                    "ground_truth": card["prompt"]["answer"],
                    "response": row["response"],
                    "verdict": row["verdict"],
                    "judge_reason": row["judge_reason"],
                    "stratum": stratum["name"],
                    "category": tables.category,
                    "prompt_id": row["prompt_id"],
                    "sample_idx": row["sample_idx"],
                }
                tasks.append({"data": data})
    return tasks
