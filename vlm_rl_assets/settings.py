"""The base of every component's settings: each stage package declares its own (one pydantic model per
component, each field with its default and meaning), and `config.py` composes them into the YAML file's schema."""

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Frozen, and an unknown key is an error (a typo in the YAML must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
