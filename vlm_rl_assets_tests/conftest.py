"""Shared fixtures: one tiny VLM per test session, built offline from a small task corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_rl_assets_tests import services, vllm_cpu_harness
from vlm_rl_assets_tests.helpers import S3_BUCKET

vllm_cpu_harness.apply()  # before anything imports torchvision

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple")
QUESTIONS = (
    "What colour is the shape?",
    "How many shapes are there?",
    "Which shape is red?",
    "Is the circle bigger than the square?",
    "What is 3 + 4?",
    "Choose the correct option.",
)
TINY_CORPUS = (
    list(QUESTIONS)
    + [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    + [f"Answer: ({letter})" for letter in "ABCD"]
    + [f"Answer: {n}" for n in range(8)]
    + [f"Answer: {colour}" for colour in COLOURS]
    + [f"The {shape} is {colour}." for shape, colour in zip(SHAPES, COLOURS)]
    + ["Answer: yes", "Answer: no"]
)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Qwen2-VL (default spec) with a tokenizer trained on `TINY_CORPUS`."""
    from vlm_rl_assets.model.tiny_model import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), TINY_CORPUS, seed=0)


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free port with bucket `S3_BUCKET`, boto3 pointed at it only through the environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3")
        client.create_bucket(Bucket=S3_BUCKET)
        yield client
    server.stop()


# The engine contract runs against every engine. vLLM's leg is marked `vllm`: `make test-vllm` runs those tests in
# .venv-vllm, where vLLM's CPU build is installed; `make test-hf` leaves them out (vLLM is not in the project's venv).
ENGINE_KINDS = ("hf", pytest.param("vllm", marks=pytest.mark.vllm))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A `vllm` test without vLLM installed skips, or in CI fails (services.missing)."""
    if item.get_closest_marker("vllm") is not None:
        services.vllm()


@pytest.fixture(scope="session", params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest, tiny_vlm_dir: Path):
    """Each rollout engine on the tiny VLM: HF with 4 sequences per generate call (so requests span several calls);
    vLLM eager (no compile to wait for) with a 1 GiB KV cache, and prefix caching off, since the tests compare
    outputs of separate calls exactly."""
    from vlm_rl_assets.rollouts.engine import HFEngine
    from vlm_rl_assets.rollouts.settings import EngineSettings
    from vlm_rl_assets.rollouts.vllm_engine import VLLMEngine

    if request.param == "hf":
        opened = HFEngine(tiny_vlm_dir, batch_size=4)
    else:
        settings = EngineSettings(kind="vllm", vllm_kv_cache_gib=1.0, vllm_enforce_eager=True)
        opened = VLLMEngine(tiny_vlm_dir, settings, enable_prefix_caching=False)
    with opened:
        yield opened
