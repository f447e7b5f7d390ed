"""Reference log-probs of DPO pairs, stored beside the pairs and keyed by (reference key, pair hash): the reference
key names the base model's fingerprint and the library versions that computed them.

The reference forward is a third of a DPO step and TRL 1.16 redoes it every step of every run; the reference of a
retrain is the same base model on mostly the same pairs, so its log-probs are computed once and read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import polars as pl

from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import Store
from vlm_rl_assets.training.libraries import library_versions

TABLE = "reference_logps"  # one table per category, like judged_pairs
PAIR_CONTENT = ("prompt_text", "images", "chosen", "rejected")

ComputeLogps = Callable[[list[int]], list[tuple[float, float]]]  # row indices of `pairs` -> (chosen, rejected)


def pair_hash(row: dict) -> str:
    """Content, not pair_id: a re-judged pair with the same texts keeps its reference log-probs, an edited one not."""
    return hashlib.sha256(json.dumps([row[k] for k in PAIR_CONTENT]).encode()).hexdigest()[:16]


def reference_key(model_fingerprint: str) -> str:
    """What cached log-probs are stored under (their `reference`): the model and the libraries that computed them, as
    `<fingerprint> transformers=<version> trl=<version>`, so an edited tokenizer or template, or an upgrade, recomputes."""
    return " ".join([model_fingerprint, *(f"{name}={v}" for name, v in library_versions().items())])


def with_reference_logps(
    store: Store, model_fingerprint: str, pairs: pl.DataFrame, compute: ComputeLogps
) -> tuple[pl.DataFrame, int]:
    """`pairs` plus ref_chosen_logps/ref_rejected_logps, computing only the pairs not yet cached for the reference
    model `model_fingerprint` under the installed libraries (and storing them); returns the table and how many were
    computed."""
    reference = reference_key(model_fingerprint)
    pairs = pairs.with_columns(pl.Series("pair_hash", [pair_hash(row) for row in pairs.iter_rows(named=True)]))
    stored = [_read(store, c) for c in pairs["category"].unique().sort()]
    cached = pl.concat([pl.DataFrame(schema=schemas.REFERENCE_LOGPS), *stored]).filter(pl.col("reference") == reference)
    known = set(cached["pair_hash"])
    missing = [i for i, h in enumerate(pairs["pair_hash"]) if h not in known]
    if missing:
        chosen, rejected = zip(*compute(missing))
        fresh = (
            pairs[missing]
            .select("category", "pair_hash", "pair_id")
            .with_columns(
                reference=pl.lit(reference), ref_chosen_logps=pl.Series(chosen), ref_rejected_logps=pl.Series(rejected)
            )
        )
        for (category,), part in fresh.group_by("category"):
            merged = pl.concat([_read(store, category), part.select(list(schemas.REFERENCE_LOGPS))])
            store.write_table(
                TABLE, category, merged.unique(["reference", "pair_hash"], keep="last"), schemas.REFERENCE_LOGPS
            )
        cached = pl.concat([cached, fresh.select(list(schemas.REFERENCE_LOGPS))])
    logps = cached.unique("pair_hash", keep="last").select("pair_hash", "ref_chosen_logps", "ref_rejected_logps")
    return pairs.join(logps, on="pair_hash", how="left", maintain_order="left"), len(missing)


def _read(store: Store, category: str) -> pl.DataFrame:
    if not store.has_table(TABLE, category):
        return pl.DataFrame(schema=schemas.REFERENCE_LOGPS)
    return store.read_table(TABLE, category, schemas.REFERENCE_LOGPS)
