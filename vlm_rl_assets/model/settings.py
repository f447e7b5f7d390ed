"""Which SFT model the pipeline starts from, and where it runs."""

from pydantic import Field

from vlm_rl_assets.settings import Settings

EMBEDDED = "embedded"  # model.path that builds and SFT-trains the tiny default here


class ModelSettings(Settings):
    path: str = Field(
        EMBEDDED, description="SFT model folder (save_pretrained), or 'embedded' to build the tiny default"
    )
    device: str = "cpu"
    torch_threads: int = Field(2, ge=1, description="intra-op threads on CPU")
    trust_remote_code: bool = Field(
        False,
        description="run the Python code a model folder ships (config.json auto_map) when loading it; off: such "
        "a folder is refused, naming transformers' own class to convert it to",
    )
