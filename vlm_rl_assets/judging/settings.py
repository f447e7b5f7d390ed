"""Each judge's settings; `categories.<c>.judge` picks the judge, `judges:` holds these."""

from typing import Literal

from pydantic import Field

from vlm_rl_assets.settings import Settings

JudgeKind = Literal["rule", "reference", "vlm", "reward_model"]


class RuleSettings(Settings):
    """Tolerances of the rule judges: numbers match when `math.isclose(got, want, rel_tol, abs_tol)`."""

    rel_tol: float = Field(0.0, ge=0, description="number answers match within this relative tolerance...")
    abs_tol: float = Field(1e-6, ge=0, description="...or this absolute one")
    ocr_correct_at: float = Field(
        0.9, ge=0, le=1, description="ocr answers: normalized edit similarity that counts as right"
    )


class ReferenceSettings(Settings):
    """The open-ended (CHAIR-style) judge of `open` answers; its vocabulary is the objects of the category's prompts."""

    synonyms: dict[str, str] = Field(
        default_factory=dict,
        description="words read as a vocabulary object, e.g. {couch: sofa, puppy: dog}; plurals (dogs, boxes) match "
        "without one",
    )


class VLMJudgeSettings(Settings):
    """A judge model behind an OpenAI-compatible endpoint, e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the server's OpenAI API root, ending in /v1")
    model: str = Field(
        "",
        description="the served model name, `vllm serve <model>` or its --served-model-name (required by judge: vlm)",
    )
    api_key_env: str = Field(
        "VLM_JUDGE_API_KEY",
        description="environment variable holding the API key (unset: no key sent); never the key itself",
    )
    timeout_s: float = Field(60.0, gt=0, description="per request")
    max_retries: int = Field(
        3, ge=0, description="retries of a timeout, 429/5xx, empty or malformed reply, then quarantine"
    )
    backoff_s: float = Field(1.0, ge=0, description="wait before retry i: backoff_s * 2**(i-1)")
    repeats: int = Field(2, ge=1, description="gradings per response, position-swapped; 2+ reports judge_consistency")
    agreement_tolerance: float = Field(0.1, ge=0, le=1, description="repeated scores this close agree")
    correct_at: float = Field(0.7, ge=0, le=1, description="score that counts as right for the right/wrong split")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(256, ge=16)
    concurrency: int = Field(8, ge=1, description="requests in flight (the server batches them)")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="json_schema: the rubric's JSON schema as response_format, which vLLM's structured outputs "
        "enforce while decoding, so replies parse; json_object: any JSON object; none: for servers that reject it",
    )


class RewardModelSettings(Settings):
    path: str = Field(
        "", description="save_pretrained folder of an AutoModelForSequenceClassification reward model (num_labels=1)"
    )
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(4096, ge=1, description="longer prompt+response texts are quarantined, not truncated")
    correct_at: float = Field(0.5, ge=0, le=1, description="sigmoid score that counts as right")


class JudgesSettings(Settings):
    """Settings of the judges categories name with `judge:`."""

    rule: RuleSettings = RuleSettings()
    reference: ReferenceSettings = ReferenceSettings()
    vlm: VLMJudgeSettings = VLMJudgeSettings()
    reward_model: RewardModelSettings = RewardModelSettings()
