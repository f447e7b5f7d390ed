"""Shared fixtures: one tiny VLM per test session, built offline from a small task corpus."""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import types
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


# Tiers: `make test-fast` leaves out every test marked pipeline, server, browser, docker or slow. The first four are
# decided here from what a test starts: the code it reaches (the test function and the fixtures it uses, then the
# functions, classes and `python -m` worker modules of this project, vlm_rl_assets and its tests, that those name,
# transitively) is looked up in STARTERS, by a name it uses (function, class or attribute) or, as "$ word", by a string
# constant in code that starts a process (it names `subprocess` or `Popen`): a word of a command line. A test that
# reaches the Chromium, Docker or PostgreSQL gateway in services.py without the marker fails (GUARDED, below), so no
# starter missing here can put one of those in the fast tier.
STARTERS = {
    "pipeline": {"materialize", "execute_in_process", "$ materialize"},  # dg.materialize, `dagster asset materialize`
    "server": {"ThreadedMotoServer", "HTTPServer", "ThreadingHTTPServer", "postgres_url", "uvicorn", "$ uvicorn"}
    | {"$ serve", "$ dagster-webserver"},
    "browser": {"chromium"},
    "docker": {"docker_compose", "$ docker", "$ docker-compose"},
}
# Measured (`pytest --durations=0` on 2 cores): the tests that start none of the above but take 15 s or more each
# (training and rollouts in worker processes, killed and resumed; two-process training), by module (every test in it)
# or module::function (every parametrization). Of the rest of the fast tier none took over 7 s.
SLOW = {
    "test_rollout_resume.py",  # 21 s
    "test_training_launch.py",  # 18 s and 16 s
    "test_training_resume.py::test_killed_run_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_run",
    "test_training_resume.py::test_a_killed_grpo_run_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_run",
}
PACKAGE = __name__.rpartition(".")[0] or "vlm_rl_assets_tests"
PROJECT = "vlm_rl_assets"  # also the prefix of PACKAGE
WORKER = re.compile(rf"^{re.escape(PACKAGE)}\.\w+$")  # a module of this package named in a command (`python -m`)


def _ours(obj: object) -> bool:
    """Whether `obj` is of this project (its package or its tests), whose code the scan follows."""
    return (getattr(obj, "__module__", None) or getattr(obj, "__name__", "")).startswith(PROJECT)


def _reached(obj: object, seen: set[int]) -> set[str]:
    """The names and "$ command words" in the code of `obj` (a function, class or module of this project) and in what
    of this project it names, transitively."""
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, types.ModuleType):  # a worker run as `python -m`: everything it defines
        defined = [v for v in vars(obj).values() if getattr(v, "__module__", None) == obj.__name__]
        return set().union(*(_reached(v, seen) for v in defined))
    if isinstance(obj, type):
        members = [m.fget if isinstance(m, property) else getattr(m, "__func__", m) for m in vars(obj).values()]
        return set().union(*(_reached(m, seen) for m in members if isinstance(m, types.FunctionType)))
    function = inspect.unwrap(obj)
    if not isinstance(function, types.FunctionType):
        return set()
    names: set[str] = set()
    strings: set[str] = set()
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        spawns = "subprocess" in code.co_names or "Popen" in code.co_names
        for const in code.co_consts:
            if isinstance(const, str):
                strings.add(const)
                if spawns:
                    names.add(f"$ {const}")
            elif isinstance(const, types.CodeType):
                codes.append(const)
    scope = function.__globals__
    modules = [v for v in scope.values() if isinstance(v, types.ModuleType) and _ours(v)]
    targets = [scope.get(name) for name in names] + [getattr(m, name, None) for m in modules for name in names]
    for string in strings:
        if WORKER.match(string) and not string.endswith(".conftest"):
            try:
                targets.append(importlib.import_module(string))
            except ImportError:
                pass
    found = set(names)
    for target in targets:
        if isinstance(target, types.ModuleType):
            if target.__name__ in strings and _ours(target):
                found |= _reached(target, seen)
        elif target is not None and _ours(target):
            found |= _reached(target, seen)
    return found


def _slow(item: pytest.Item) -> bool:
    module = Path(item.location[0]).name
    return module in SLOW or f"{module}::{item.originalname}" in SLOW


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        functions = [getattr(item, "function", None)]
        if fixtures is not None:
            functions += [d.func for defs in fixtures.name2fixturedefs.values() for d in defs]
        seen: set[int] = set()
        reached = set().union(*(_reached(f, seen) for f in functions if f is not None and _ours(f)))
        for marker, starters in STARTERS.items():
            if reached & starters:
                item.add_marker(marker)
        if _slow(item):
            item.add_marker("slow")


# The gateways to Chromium, Docker and PostgreSQL: reaching one from a test without its marker fails the test, in
# every tier (so in CI's full run), rather than letting it run in `make test-fast`.
GUARDED = {"chromium": "browser", "docker_compose": "docker", "postgres_url": "server"}
_running: list[pytest.Item] = []


def _guard(gateway, marker: str):
    @functools.wraps(gateway)
    def guarded(*args, **kwargs):
        if _running and _running[-1].get_closest_marker(marker) is None:
            pytest.fail(
                f"{_running[-1].nodeid} reaches services.{gateway.__name__}() but is not marked `{marker}`: add the "
                f"name it goes through to STARTERS in conftest.py (or `pytestmark = pytest.mark.{marker}`)",
                pytrace=False,
            )
        return gateway(*args, **kwargs)

    return guarded


for _name, _marker in GUARDED.items():  # before the test modules import them by name
    setattr(services, _name, _guard(getattr(services, _name), _marker))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()
