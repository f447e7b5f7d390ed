"""The VLM judge against a scripted OpenAI-compatible endpoint on loopback: retries, failures with
reasons (never a silent 0), repeated position-swapped judging and its consistency."""

from __future__ import annotations

import re
import socket

import pytest
from PIL import Image

from vlm_rl_assets.judging.contract import JudgeFailure, JudgeItem, Verdict
from vlm_rl_assets.judging.settings import VLMJudgeSettings
from vlm_rl_assets.judging.vlm_judge import JudgeUnavailable, RetryableFailure, VLMJudge, parse_scores
from vlm_rl_assets_tests.scripted_endpoint import (
    EMPTY_BODY,
    GARBAGE,
    HTTP_500,
    Reply,
    ScriptedEndpoint,
    scores,
    too_slow,
)

TIMEOUT_S = 0.3


def item(response: str = "A red circle on the left.", group: str = "p0", idx: int = 0) -> JudgeItem:
    return JudgeItem(
        key=f"{group}/{idx}",
        group=group,
        prompt_text="Describe the image.",
        response=response,
        answer_type="open",
        answer="A red circle.",
        reference="The image shows a red circle.",
        images=("images/a.png",),
    )


def vlm_judge(endpoint: ScriptedEndpoint, api_key: str = "", **overrides) -> VLMJudge:
    settings = dict(
        base_url=endpoint.base_url,
        model="judge",
        timeout_s=TIMEOUT_S,
        max_retries=2,
        backoff_s=0.0,
        repeats=1,
        concurrency=1,
    )
    load_image = lambda uri: Image.new("RGB", (8, 8), "red")  # noqa: E731
    return VLMJudge(VLMJudgeSettings(**(settings | overrides)), load_image, api_key=api_key)


@pytest.mark.parametrize(
    "content, code",
    [
        ("I'd say 8/10", "vlm_malformed_json"),
        ("", "vlm_empty_reply"),
        (None, "vlm_empty_reply"),
        ('{"facts": 8, "hallucination": 9, "style": 7}', "vlm_invalid_scores"),  # no reason
        ('{"facts": 11, "hallucination": 9, "style": 7, "reason": "x"}', "vlm_invalid_scores"),  # out of range
        (
            '{"facts": "8", "hallucination": 9, "style": 7, "reason": "x"}',
            "vlm_invalid_scores",
        ),  # a string, not a number
        ('{"facts": 8, "hallucination": 9, "style": 7, "reason": "x", "bonus": 1}', "vlm_invalid_scores"),
        ("[8, 9, 7]", "vlm_invalid_scores"),
    ],
)
def test_malformed_grades_are_retryable_failures(content, code):
    with pytest.raises(RetryableFailure) as raised:
        parse_scores(content)
    assert raised.value.code == code


def test_valid_grades_parse_plain_or_fenced():
    plain = parse_scores('{"facts": 10, "hallucination": 10, "style": 10, "reason": "same"}')
    fenced = parse_scores('```json\n{"facts": 8, "hallucination": 6, "style": 4, "reason": "ok"}\n```')
    assert plain.score == 1.0 and fenced.score == pytest.approx(0.5 * 0.8 + 0.3 * 0.6 + 0.2 * 0.4)


def test_garbage_empty_timeout_and_500_are_retried_until_a_valid_reply():
    script = [GARBAGE, EMPTY_BODY, too_slow(TIMEOUT_S * 3), HTTP_500, scores(8, 10, 6)]
    with ScriptedEndpoint(script) as endpoint:
        run = vlm_judge(endpoint, max_retries=4).judge([item()])
    (verdict,) = run.outcomes
    assert isinstance(verdict, Verdict) and verdict.score == pytest.approx(0.82) and verdict.correct
    assert len(endpoint.requests) == 5 and run.failure_counts() == {}


@pytest.mark.parametrize(
    "script, code",
    [
        ([GARBAGE] * 3, "vlm_malformed_json"),
        ([Reply(content="")] * 3, "vlm_empty_reply"),
        ([EMPTY_BODY] * 3, "vlm_empty_body"),
        ([too_slow(TIMEOUT_S * 3)] * 3, "vlm_timeout"),
        ([HTTP_500] * 3, "vlm_http_500"),
        ([HTTP_500, GARBAGE, Reply(status=200, body="<html>oops</html>")], "vlm_malformed_reply"),  # the last reason
    ],
)
def test_a_judge_that_keeps_failing_yields_a_failure_with_its_reason_never_a_zero(script, code):
    with ScriptedEndpoint(script) as endpoint:
        judge = vlm_judge(endpoint)
        run = judge.judge([item()])
    (outcome,) = run.outcomes
    assert isinstance(outcome, JudgeFailure) and outcome.code == code
    assert "3 attempts" in outcome.reason and len(endpoint.requests) == 3  # 1 + max_retries, then it stops
    assert run.failure_counts() == {code: 1} and run.failures([item()]) == [("p0/0", outcome.reason)]


def test_a_rejected_request_is_not_retried():
    with ScriptedEndpoint([Reply(status=400, body="prompt too long"), scores(9, 9, 9)]) as endpoint:
        (outcome,) = vlm_judge(endpoint).judge([item()]).outcomes
    assert isinstance(outcome, JudgeFailure) and outcome.code == "vlm_http_400" and len(endpoint.requests) == 1


def test_repeats_swap_positions_and_report_consistency_and_rank_agreement():
    items = [item("A red circle.", idx=0), item("A blue star.", idx=1), item("Red circle", group="p1")]
    script = [
        scores(8, 8, 8),
        scores(8, 8, 8),  # p0/0: the repeats agree
        scores(2, 2, 2),
        scores(9, 9, 9),  # p0/1: they do not, and flip the group's order
        scores(5, 5, 5),
        scores(5.4, 5, 5),  # p1/0: within tolerance
    ]
    with ScriptedEndpoint(script) as endpoint:
        run = vlm_judge(endpoint, repeats=2, agreement_tolerance=0.1).judge(items)
    assert [round(o.score, 3) for o in run.outcomes] == [0.8, 0.55, 0.51]
    assert run.metrics == {"consistency": pytest.approx(2 / 3), "rank_agreement": 0.0}
    first, second = (request["messages"][1]["content"][-1]["text"] for request in endpoint.requests[:2])
    assert first.index("Ground truth") < first.index("Response to grade")
    assert second.index("Response to grade") < second.index("Ground truth")  # position swapped
    image = endpoint.requests[0]["messages"][1]["content"][0]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    schema = endpoint.requests[0]["response_format"]["json_schema"]["schema"]  # the default: the rubric's schema
    assert schema["required"] == ["facts", "hallucination", "style", "reason"] and not schema["additionalProperties"]


@pytest.mark.parametrize("asked, sent", [("json_object", {"type": "json_object"}), ("none", None)])
def test_response_format_is_what_the_settings_ask(asked: str, sent: dict | None) -> None:
    with ScriptedEndpoint([scores(9, 9, 9)]) as endpoint:
        vlm_judge(endpoint, response_format=asked).judge([item()])
    assert endpoint.requests[0].get("response_format") == sent


def test_a_response_with_a_failed_repeat_is_quarantined_not_averaged():
    with ScriptedEndpoint([scores(9, 9, 9), GARBAGE, GARBAGE, GARBAGE]) as endpoint:
        (outcome,) = vlm_judge(endpoint, repeats=2).judge([item()]).outcomes
    assert isinstance(outcome, JudgeFailure) and outcome.code == "vlm_malformed_json"


def test_concurrent_requests_keep_each_verdict_with_its_item():
    items = [item(f"answer {i}", idx=i) for i in range(6)]
    with ScriptedEndpoint([scores(5, 5, 5)] * 6) as endpoint:
        run = vlm_judge(endpoint, concurrency=4).judge(items)
    assert len(endpoint.requests) == 6 and all(isinstance(o, Verdict) for o in run.outcomes)
    assert {r["messages"][1]["content"][-1]["text"].rsplit("\n", 1)[-1] for r in endpoint.requests} == {
        i.response for i in items
    }


def test_the_api_key_is_sent_as_a_bearer_token():
    with ScriptedEndpoint([scores(9, 9, 9)]) as endpoint:
        vlm_judge(endpoint, api_key="sk-test").judge([item()])
    assert endpoint.headers[0]["Authorization"] == "Bearer sk-test"


def test_an_unreadable_image_fails_the_row_with_its_reason():
    def missing(uri: str) -> Image.Image:
        raise FileNotFoundError(2, "No such file", uri)

    with ScriptedEndpoint([]) as endpoint:
        judge = VLMJudge(
            VLMJudgeSettings(base_url=endpoint.base_url, model="judge", timeout_s=TIMEOUT_S), load_image=missing
        )
        (outcome,) = judge.judge([item()]).outcomes
    assert isinstance(outcome, JudgeFailure) and outcome.code == "image_unreadable" and not endpoint.requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unusable_endpoints_stop_the_stage_before_any_row_is_judged():
    with ScriptedEndpoint([]) as endpoint:
        with pytest.raises(JudgeUnavailable, match="does not serve model 'other'.*set judges.vlm.model"):
            vlm_judge(endpoint, model="other").judge([item()])
    port = free_port()
    unreachable = VLMJudgeSettings(base_url=f"http://127.0.0.1:{port}/v1", model="judge", timeout_s=TIMEOUT_S)
    serve = f"python -m vllm.entrypoints.openai.api_server --model judge --host 127.0.0.1 --port {port} "
    with pytest.raises(JudgeUnavailable, match=f"no OpenAI-compatible server answers.*{re.escape(serve)}"):
        VLMJudge(unreachable, load_image=lambda uri: Image.new("RGB", (8, 8))).judge([item()])
    with ScriptedEndpoint([Reply(status=401, body="bad key")]) as endpoint:
        with pytest.raises(JudgeUnavailable, match="VLM_JUDGE_API_KEY"):
            vlm_judge(endpoint).judge([item()])
