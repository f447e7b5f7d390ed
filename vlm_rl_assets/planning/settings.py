"""What the machines a run gets hold (`resources:`): the memory plan (`planning/plan.py`) checks every stage against
them before launch, and the Kubernetes code location asks for a training step's GPUs from them."""

from pydantic import Field, field_validator

from vlm_rl_assets.settings import Settings


class ResourcesSettings(Settings):
    gpu_memory_gib: float | None = Field(
        None,
        gt=0,
        description="memory of one GPU in GiB (80 for an H100 80GB); null: on model.device cpu this host's RAM, on "
        "cuda the visible card's",
    )
    gpus_per_node: int = Field(1, ge=1, description="GPUs of one node a training step may use (its pod asks for them)")
    nodes: int = Field(
        1,
        ge=1,
        description="nodes a training step spans: 1 (a step launches its processes on its own node; a multi-node run "
        "is launched by hand, docs/scaling.md)",
    )
    prompt_tokens: int = Field(
        96,
        ge=1,
        description="text tokens of a prompt besides its image tokens, as the plan assumes them (chat markup, "
        "instruction, question)",
    )

    @field_validator("nodes")
    @classmethod
    def one_node(cls, nodes: int) -> int:
        if nodes != 1:
            raise ValueError(
                f"nodes: {nodes}: a pipeline step launches its training processes on its own node; multi-node runs "
                "are launched by hand (docs/scaling.md). Set nodes: 1"
            )
        return nodes

    @property
    def cards(self) -> int:
        """GPUs one training step holds."""
        return self.gpus_per_node * self.nodes
