"""A category's review page: a stratified sample of prompts (sample.py), each with its image, question, ground
truth, every rollout with score, verdict, judge reason and drop reason, and the pairs made from it, chosen beside
rejected; the quarantined rows with their reasons; the headline counts. One self-contained HTML file (images
inline as data: URIs, no network), rendered from a Jinja2 template with autoescape on.

The page shows the tables up to the stage that wrote it (`STAGES`): rewritten by rollouts it has no verdicts,
by filtered_rollouts no pairs (the pairs on disk may be of older verdicts), by judged_pairs everything.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import jinja2
import polars as pl

from vlm_rl_assets.names import FILTERED_ROLLOUTS, JUDGED_PAIRS, PROMPT_MIXTURE, ROLLOUTS
from vlm_rl_assets.pairs.filtering import drop_counts
from vlm_rl_assets.reviewing.sample import stratified_sample
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store

STAGES = (PROMPT_MIXTURE, ROLLOUTS, FILTERED_ROLLOUTS, JUDGED_PAIRS)  # in graph order
PER_STRATUM = 4  # prompts sampled from each stratum
QUARANTINE_ROWS = 200  # shown on the page; the rest counted
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
TEMPLATES = jinja2.Environment(  # the page and the server's index; autoescape on: data is text, never markup
    loader=jinja2.PackageLoader("vlm_rl_assets.reviewing", "templates"), autoescape=True
)


@dataclass(frozen=True)
class ReviewTables:
    category: str
    prompts: pl.DataFrame  # schemas.PROMPTS
    rollouts: pl.DataFrame  # schemas.FILTERED_ROLLOUTS; before judging, rollouts with null verdict columns
    pairs: pl.DataFrame | None  # schemas.JUDGED_PAIRS, None before pairing
    quarantine: pl.DataFrame  # schemas.QUARANTINE of every stage shown
    key: str = ""  # the store key of the stage tables when not the category's (a later round's: round<r>/<category>)

    @property
    def page_key(self) -> str:
        return self.key or self.category


@dataclass(frozen=True)
class Labelling:
    """What a served page needs to take labels: where to post them, who labels, and the labels saved so far."""

    endpoint: str
    who: str
    labels: pl.DataFrame  # schemas.HUMAN_LABELS


def page_path(category: str) -> str:
    """Where a category's page lies in the store, beside the tables."""
    return f"review/{category}.html"


def read_tables(store: Store, category: str, upto: str, key: str = "") -> ReviewTables:
    """The tables of `category` from prompt_mixture through the stage `upto` (one of STAGES, past prompt_mixture);
    the stage tables under `key` when given (a later round's; the prompts are every round's)."""
    shown = STAGES[: STAGES.index(upto) + 1]
    staged = key or category
    prompts = store.read_table(PROMPT_MIXTURE, category, schemas.PROMPTS)
    if FILTERED_ROLLOUTS in shown:
        rollouts = store.read_table(FILTERED_ROLLOUTS, staged, schemas.FILTERED_ROLLOUTS)
    else:
        unjudged = {c: pl.lit(None, dtype=t) for c, t in schemas.FILTERED_ROLLOUTS.items() if c not in schemas.ROLLOUTS}
        rollouts = store.read_table(ROLLOUTS, staged, schemas.ROLLOUTS).with_columns(**unjudged)
    pairs = store.read_table(JUDGED_PAIRS, staged, schemas.JUDGED_PAIRS) if JUDGED_PAIRS in shown else None
    quarantine_keys = [f"{stage}/{category if stage == STAGES[0] else staged}" for stage in shown]
    quarantine = [
        store.read_table("quarantine", q, schemas.QUARANTINE)
        for q in quarantine_keys
        if store.has_table("quarantine", q)
    ]
    quarantined = pl.concat([schemas.empty(schemas.QUARANTINE), *quarantine])
    return ReviewTables(category, prompts, rollouts, pairs, quarantined, key)


def write_page(store: Store, tables: ReviewTables) -> str:
    """Render the category's page (without labelling) into the store beside its tables; returns its URI."""
    html = review_page(tables, store.read_bytes)
    return store.write_bytes(page_path(tables.page_key), html.encode())


def review_page(
    tables: ReviewTables,
    read_image: Callable[[str], bytes],
    labelling: Labelling | None = None,
    per_stratum: int = PER_STRATUM,
) -> str:
    """The page's HTML; with `labelling`, every judged rollout gets right/wrong buttons (the server's page)."""
    labels = labelling.labels if labelling else None
    quarantine = tables.quarantine.sort("stage", "key")
    return TEMPLATES.get_template("review.html.j2").render(
        category=tables.category,
        headline=headline(tables, labels),
        strata=sampled_strata(tables, read_image, per_stratum, labels),
        quarantine=quarantine.head(QUARANTINE_ROWS).to_dicts(),
        quarantine_more=max(quarantine.height - QUARANTINE_ROWS, 0),
        labelling=labelling,
    )


def sampled_strata(
    tables: ReviewTables, read_image: Callable[[str], bytes], per_stratum: int, labels: pl.DataFrame | None = None
) -> list[dict]:
    """The stratified sample as the page shows it: per stratum its name, size and a card per sampled prompt (prompt
    row, inline images, rollouts with verdicts and any human label, pairs)."""
    labels = schemas.empty(schemas.HUMAN_LABELS) if labels is None else labels
    label_of = {(r["prompt_id"], r["sample_idx"]): r for r in labels.iter_rows(named=True)}
    prompts = {row["prompt_id"]: row for row in tables.prompts.iter_rows(named=True)}
    return [
        {
            "name": stratum.name,
            "total": stratum.total,
            "cards": [_card(prompts.get(pid), pid, tables, read_image, label_of) for pid in stratum.prompt_ids],
        }
        for stratum in stratified_sample(tables.rollouts, tables.pairs, per_stratum, seed=f"review/{tables.category}")
    ]


def headline(tables: ReviewTables, labels: pl.DataFrame | None) -> dict[str, object]:
    """The category's counts, as shown at the top of its page."""
    rollouts = tables.rollouts
    counts: dict[str, object] = {
        "train prompts": tables.prompts.filter(pl.col("split") == "train").height,
        "prompts rolled out": rollouts["prompt_id"].n_unique(),
        "rollouts": rollouts.height,
    }
    if not rollouts["kept"].is_null().all():
        counts["sample accuracy"] = round(float(rollouts["correct"].mean()), 3)
        counts.update(drop_counts(rollouts))
    if tables.pairs is not None:
        counts["pairs"] = tables.pairs.height
        counts["prompts with pairs"] = tables.pairs["prompt_id"].n_unique()
    counts["quarantined"] = tables.quarantine.height
    for stage, n in sorted(tables.quarantine.group_by("stage").len().iter_rows()):
        counts[f"quarantined in {stage}"] = n
    if labels is not None:
        counts["human labels"] = labels.height
        counts["labels agreeing with the judge"] = int((labels["label"] == labels["verdict"]).sum())
    return counts


def _card(prompt: dict | None, prompt_id: str, tables: ReviewTables, read_image, label_of: dict) -> dict:
    rows = tables.rollouts.filter(pl.col("prompt_id") == prompt_id).sort("sample_idx")
    pairs = tables.pairs.filter(pl.col("prompt_id") == prompt_id) if tables.pairs is not None else None
    return {
        "prompt_id": prompt_id,
        "prompt": prompt,  # None: the prompt table no longer has it (rollouts of an older prompt table)
        "images": [_inline(uri, read_image) for uri in (prompt["images"] if prompt else [])],
        "rollouts": [_rollout(row, label_of.get((prompt_id, row["sample_idx"]))) for row in rows.iter_rows(named=True)],
        "pairs": pairs.to_dicts() if pairs is not None else [],
    }


def _rollout(row: dict, label: dict | None) -> dict:
    judged = row["correct"] is not None
    return {
        **row,
        "key": f"{row['prompt_id']}/{row['sample_idx']}",
        "verdict": ("right" if row["correct"] else "wrong") if judged else None,
        "outcome": ("kept" if row["kept"] else row["drop_reason"]) if judged else None,
        "label": None if label is None else ("right" if label["label"] else "wrong"),
        "labelled_by": None if label is None else label["who"],
    }


def _inline(uri: str, read_image: Callable[[str], bytes]) -> dict:
    """An image as a data: URI, or why it is not shown (the page must render even when an image is gone)."""
    mime = MIME.get(PurePosixPath(uri).suffix.lower())
    if mime is None:
        return {"uri": uri, "missing": f"not shown: unknown image type {PurePosixPath(uri).suffix!r}"}
    try:
        data = read_image(uri)
    except FileNotFoundError:
        return {"uri": uri, "missing": "image missing from the store"}
    return {"uri": uri, "src": f"data:{mime};base64,{base64.b64encode(data).decode()}"}


def latest_tables(store: Store, category: str) -> ReviewTables:
    """Everything on disk through judged_pairs (filtered_rollouts at least), for the server's page; pairs are left
    out when one's rejected half is not a current rollout of its prompt: they were made from older rollouts."""
    upto = JUDGED_PAIRS if store.has_table(JUDGED_PAIRS, category) else FILTERED_ROLLOUTS
    tables = read_tables(store, category, upto)
    if tables.pairs is not None:
        current = tables.rollouts.select("prompt_id", rejected="response")
        if tables.pairs.join(current, on=["prompt_id", "rejected"], how="anti").height:
            return ReviewTables(category, tables.prompts, tables.rollouts, None, tables.quarantine)
    return tables
