"""Judge calibration: does a category's judge agree with labelled verdicts before its pairs train DPO?

A labelled sample is a Parquet or JSONL file, one row per labelled response:
  - `prompt_id`: a prompt of the category's prompt table (the id rollouts and filtered_rollouts carry);
  - `label`: true when the response is right (bool, or 0/1);
  - `response`: the text that was labelled, or instead `sample_idx`: label a rollout of `rollouts[c]`
    by (prompt_id, sample_idx), e.g. from an export of filtered_rollouts.
Prompts are named by id, not by question text, because one question ("What colour is the shape?")
is asked of many images.

`human` takes the labels people gave on the category's review page (`python -m vlm_rl_assets.review serve`), kept
in the store at `labels/<category>`; labels of rollouts regenerated since are left out and counted.

`references` builds a sanity sample from the prompt table alone: each sampled prompt's reference
response labelled right, and the reference of another prompt with a different answer (and different
objects, where prompts list them: two scenes of the same objects may be described in another order)
labelled wrong. It checks that the judge accepts the ground truth and rejects another prompt's
answer in the same format; it says nothing about the policy's messier outputs, which only labels
of real rollouts measure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from vlm_rl_assets.judging.contract import RolloutJudge
from vlm_rl_assets.judging.scoring import score_rollouts

REFERENCES = "references"
HUMAN = "human"  # the labels people gave on the category's review page (reviewing/labels.py)
REFERENCE_PROMPTS = 100  # prompts in the `references` sample: up to 200 labelled rows
LABELS = {"prompt_id": pl.String, "sample_idx": pl.Int32, "response": pl.String, "label": pl.Boolean}


@dataclass(frozen=True)
class Agreement:
    """Judge verdicts against labels, "right" as the positive class. A labelled row the judge failed on
    counts as a disagreement (a false negative if labelled right, a false positive if wrong): a judge
    that cannot score most labels must not pass on the few it scored."""

    true_pos: int  # both say right
    false_pos: int  # the judge says right, the label wrong
    false_neg: int  # the judge says wrong, the label right
    true_neg: int
    failed: int  # labelled rows the judge could not score

    @property
    def n(self) -> int:
        return self.true_pos + self.false_pos + self.false_neg + self.true_neg + self.failed

    @property
    def f1(self) -> float:
        """F1 of "right"; 1.0 when neither side calls anything right and nothing failed (nothing to disagree on)."""
        errors = self.false_pos + self.false_neg + self.failed
        return 2 * self.true_pos / (2 * self.true_pos + errors) if self.true_pos or errors else 1.0

    @property
    def agreement(self) -> float:
        return (self.true_pos + self.true_neg) / self.n if self.n else 0.0


@dataclass(frozen=True)
class Calibration:
    agreement: Agreement
    judged: pl.DataFrame  # the labelled rows the judge scored: prompt_id, response, label, correct, judge_reason
    failure_counts: dict[str, int]  # labelled rows the judge could not score, by code


def read_labels(path: str | Path) -> pl.DataFrame:
    """A labels file as LABELS columns (sample_idx or response null where the file lacks them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"calibration labels {path} not found; write it (see judging/calibration.py) or fix the path"
        )
    raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ndjson(path)
    missing = [c for c in ("prompt_id", "label") if c not in raw.columns]
    if missing or not {"response", "sample_idx"} & set(raw.columns):
        raise ValueError(
            f"calibration labels {path} has columns {raw.columns}; it needs prompt_id, label, and response or sample_idx"
        )
    label = raw["label"]
    if label.null_count() or (label.dtype != pl.Boolean and not label.is_in([0, 1]).all()):
        raise ValueError(
            f"calibration labels {path}: every label must be true/false or 1/0, got {label.unique().to_list()[:5]}"
        )
    return raw.select(
        pl.col(c).cast(t) if c in raw.columns else pl.lit(None, dtype=t).alias(c) for c, t in LABELS.items()
    )


def with_responses(labels: pl.DataFrame, rollouts: pl.DataFrame) -> pl.DataFrame:
    """Fill the response of rows labelled by (prompt_id, sample_idx) from the category's rollouts."""
    lookup = rollouts.select("prompt_id", "sample_idx", rollout_response="response")
    filled = labels.join(lookup, on=["prompt_id", "sample_idx"], how="left").with_columns(
        response=pl.coalesce("response", "rollout_response")
    )
    unmatched = filled.filter(pl.col("response").is_null())
    if unmatched.height:
        example = unmatched.row(0, named=True)
        raise ValueError(
            f"{unmatched.height} calibration labels name no rollout (e.g. prompt_id {example['prompt_id']}, "
            f"sample_idx {example['sample_idx']}); label rows of the current rollouts, or give their response text"
        )
    return filled.drop("rollout_response")


def reference_labels(prompts: pl.DataFrame, seed: int, n_prompts: int = REFERENCE_PROMPTS) -> pl.DataFrame:
    """The `references` sample: per sampled train prompt, its reference (right) and the reference of
    another prompt whose answer differs, and its objects too where it lists them (wrong)."""
    train = prompts.filter(pl.col("split") == "train").select("prompt_id", "answer", "reference", "objects").rows()
    rng = random.Random(f"calibration/{seed}")
    order = rng.sample(train, len(train))
    rows = []
    for i, (pid, answer, reference, objects) in enumerate(order[:n_prompts]):
        rows.append((pid, reference, True))
        others = order[i + 1 :] + order[:i]  # the next different prompt, so wrong answers vary
        other = next((r for r in others if r[1] != answer and (not objects or set(r[3]) != set(objects))), None)
        if other is not None:
            rows.append((pid, other[2], False))
    frame = pl.DataFrame(
        rows, schema={"prompt_id": pl.String, "response": pl.String, "label": pl.Boolean}, orient="row"
    )
    return frame.with_columns(sample_idx=pl.lit(None, dtype=pl.Int32)).select(list(LABELS))


def calibrate(labels: pl.DataFrame, prompts: pl.DataFrame, judge: RolloutJudge) -> Calibration:
    """Run `judge` on every labelled (prompt, response) and count where it agrees with the label; a row it
    could not score counts against it."""
    unknown = labels.join(prompts, on="prompt_id", how="anti")
    if unknown.height:
        raise ValueError(
            f"{unknown.height} calibration labels name prompts absent from this category's prompt table "
            f"(e.g. {unknown['prompt_id'][0]}); label prompts of prompt_mixture for this category"
        )
    rows = labels.select("prompt_id", "response", "label", sample_idx=pl.int_range(pl.len(), dtype=pl.Int32))
    scored = score_rollouts(rows, prompts, judge)
    judged = scored.scored.select("prompt_id", "response", "label", "correct", "judge_reason")
    counts = judged.group_by("label", "correct").len()
    count = {(label, correct): n for label, correct, n in counts.iter_rows()}
    agreement = Agreement(
        true_pos=count.get((True, True), 0),
        false_pos=count.get((False, True), 0),
        false_neg=count.get((True, False), 0),
        true_neg=count.get((False, False), 0),
        failed=len(scored.failures),
    )
    return Calibration(agreement, judged, scored.failure_counts)
