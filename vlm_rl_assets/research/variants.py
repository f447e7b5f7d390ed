"""Config variants: the pipeline config with a few dotted keys changed, for experiments that compare settings."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def with_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the raw config mapping with each dotted key ('categories.count.beta') set to its value.

    Missing intermediate mappings are created; a key path through a non-mapping value is an error naming it,
    so a typo cannot silently add an unused key (the config's own validation then rejects unknown keys)."""
    result = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = result
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted!r}: {'.'.join(parents[: i + 1])} is {child!r}, not a mapping")
            node = child
        node[leaf] = copy.deepcopy(value)
    return result
