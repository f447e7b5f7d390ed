# Two commands: `make demo` runs the whole pipeline on the embedded default; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test dev install clean

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

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf data $(DAGSTER_HOME)
