"""Which SFT model the pipeline starts from, and where it runs."""

from pydantic import Field

from vlm_rl_assets.settings import Settings

EMBEDDED = "embedded"  # model.path that builds and SFT-trains the tiny default here


class ModelSettings(Settings):
    path: str = Field(EMBEDDED, description="SFT model folder (save_pretrained), or 'embedded' to build the tiny default")
    device: str = "cpu"
    torch_threads: int = Field(2, ge=1, description="intra-op threads on CPU")
