"""How models are benchmarked: the bench split's greedy and sampled responses, the promotion gate, and the
standard benchmarks of an external harness."""

import re
from typing import Literal

from pydantic import Field, model_validator

from vlm_rl_assets.rollouts.settings import SamplingTemperature
from vlm_rl_assets.settings import Settings


class EvalSettings(Settings):
    split: Literal["bench", "dev"] = Field(
        "bench",
        description="the held-out split benchmark_scores and release_report measure: bench reports; dev is where the "
        "experiments' sweeps choose settings, so the bench numbers stay unbiased by the choice",
    )
    max_new_tokens: int = Field(48, ge=1)
    samples_per_prompt: int = Field(8, ge=1, description="sampled responses per bench prompt, for pass@k, k = 1..this")
    temperature: SamplingTemperature = Field(1.0, description="sampling temperature of the pass@k responses, in (0, 2]")
    max_category_loss: float = Field(
        0.01,
        ge=0,
        description="promotion gate: a category blocks promotion when its paired 95% CI of the accuracy delta lies "
        "wholly below -max_category_loss, a loss the bench tells apart from noise. The CI and not the point estimate "
        "decides, since on ~200 bench prompts a category's point delta moves by about 5 points from noise alone: a "
        "point rule would block most releases on chance. Widen the bench to catch smaller losses.",
    )
    max_gaming_rise: float = Field(
        0.05,
        ge=0,
        description="hack monitor: the gaming_monitor check warns when the share of the trained model's greedy bench "
        "responses with a gaming pattern (several answers named, echoed options, final answers that disagree, length "
        "outliers) exceeds the base model's on the same prompts by more than this (0.05: 5 points)",
    )
    length_outlier_factor: float = Field(
        3.0,
        gt=0,
        description="hack monitor: a response with more than this many times the base model's median words in its "
        "category (its rollouts, or its bench responses) is a length outlier",
    )


class ExternalEvalSettings(Settings):
    """Standard benchmarks by an external harness on base and policy: the `external_benchmarks` asset, for GPU
    deployments with the harness installed (evaluation/external_eval.py; README, "Standard benchmarks on GPU deployments")."""

    harness: Literal["none", "lmms_eval", "vlmevalkit"] = Field(
        "none",
        description="none: external_benchmarks skips; lmms_eval: pip install lmms-eval; vlmevalkit: pip install -e a git "
        "checkout of open-compass/VLMEvalKit (its run.py is used)",
    )
    tasks: list[str] = Field(
        default_factory=list,
        description="lmms_eval: task names (e.g. mmstar, ai2d); vlmevalkit: <dataset class>:<dataset> (e.g. "
        "ImageMCQDataset:MMStar, ImageYORNDataset:POPE): its --config JSON needs each dataset's class",
    )
    model_type: str = Field(
        "",
        description="lmms_eval: its --model (qwen2_vl, qwen2_5_vl); vlmevalkit: a vlmeval.vlm class (Qwen2VLChat); "
        "empty: qwen2_vl / Qwen2VLChat",
    )
    model_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more model settings, the model class's constructor arguments: lmms_eval --model_args pairs after "
        "pretrained=<folder> (e.g. max_pixels); vlmevalkit keys of the model entry beside model_path (e.g. max_new_tokens)",
    )
    batch_size: int = Field(1, ge=1, description="lmms_eval --batch_size (VLMEvalKit generates one sample at a time)")
    log_samples: bool = Field(False, description="lmms_eval --log_samples: every response saved beside the results")
    extra_args: list[str] = Field(
        default_factory=list,
        description="appended to the harness's command line, e.g. [--limit, '8'] or [--judge, exact_matching]",
    )
    work_dir: str = Field(
        "",
        description="harness outputs, <work_dir>/<harness>/<base|policy>, each cleared before its run; empty: "
        "<storage.cache_dir or ~/.cache/vlm_rl_assets>/external_eval",
    )

    @model_validator(mode="after")
    def tasks_fit_harness(self) -> "ExternalEvalSettings":
        if self.harness != "none" and not self.tasks:
            raise ValueError(
                f"harness is {self.harness} but tasks is empty: list its benchmarks, e.g. [mmstar] for lmms_eval, "
                "[ImageMCQDataset:MMStar] for vlmevalkit"
            )
        malformed = [t for t in self.tasks if self.harness == "vlmevalkit" and not re.fullmatch(r"\w+:[^:]+", t)]
        if malformed:
            raise ValueError(
                f"vlmevalkit tasks {malformed} must read <dataset class>:<dataset>, e.g. ImageMCQDataset:MMStar "
                "(the class from vlmeval.dataset)"
            )
        return self
