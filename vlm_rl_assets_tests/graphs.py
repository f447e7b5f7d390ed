"""The asset graph of a test's pipeline resource: its config's assets and checks, on its partitions."""

from vlm_rl_assets.config import load_config
from vlm_rl_assets.graph import build_graph


def everything(resources: dict) -> list:
    """What `dg.materialize` takes for `resources["pipeline"]`'s config."""
    return build_graph(resources["pipeline"].config).everything


DEFAULT = build_graph(load_config())  # the bundled default's graph: its lists name the stages a selection takes
CATEGORY_ASSETS, RELEASE_ASSETS, ASSETS = DEFAULT.category_assets, DEFAULT.release_assets, DEFAULT.assets
