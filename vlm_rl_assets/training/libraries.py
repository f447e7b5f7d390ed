"""The libraries whose versions decide DPO's numbers, for the keys of work that later runs reuse."""

from __future__ import annotations

from importlib.metadata import version

# transformers: the processor and the model code; TRL: the collator, the reference forward and the DPOConfig defaults
# the project leaves alone, such as max_length (TRL truncates longer pairs, and so their log-probs)
KEYED_LIBRARIES = ("transformers", "trl")


def library_versions() -> dict[str, str]:
    """Installed version of each of `KEYED_LIBRARIES`: an upgrade recomputes cached numbers instead of reusing ones it
    would not produce."""
    return {name: version(name) for name in KEYED_LIBRARIES}
