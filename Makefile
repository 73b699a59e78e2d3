# medgan: two commands on a fresh machine with python3 and make.
#   make demo   sets up .venv when missing, then runs the end-to-end demo
#   make test   sets up .venv when missing, then runs the test suite (all of it: what CI runs), in 2 pytest-xdist
#               workers (TEST_WORKERS=1 for one process); tests/conftest.py gives each worker one thread
#   make test-fast   the same without the tests marked slow (pytest -m "not slow")
#   make lint   sets up .venv when missing, then runs ruff (lint, import order, complexity), mypy and lint-imports
#               (the layer contract of docs/architecture.md), all configured in pyproject.toml
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medgan-installed
# The CPU build of PyTorch is installed first when no NVIDIA GPU is present, so that
# pip does not pull a multi-GB CUDA build to satisfy `torch>=2.4`.
TORCH_CPU ?= torch==2.13.0
# pytest-xdist workers: one per CPU core of the CI machine; whole files per worker (--dist loadfile), so that
# a file's module and session fixtures (the Catphan simulation, tests/simulation/conftest.py) are built once
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)
# Dose evaluation (medgan[dose]) for the tests: pyRadPlan 0.5.0 declares numpy<2.4 and an LLM-agent
# library it does not use for planning, so it is installed without its dependencies, with the
# packages it imports (docs/dose.md, "Installing").
DOSE_DEPS := "pydantic>=2.10,<2.14" pymedphys==0.41.0 numba array_api_compat array_api_strict \
	array_api_extra types-array-api pymatreader h5py regex "pydantic-settings<3" numpydantic pint

.PHONY: all demo test test-fast venv clean lint

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo "medgan: no NVIDIA GPU found, installing the CPU build of PyTorch"; \
		$(PY) -m pip install -q "$(TORCH_CPU)" || \
		$(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[dev,simulate]"
	$(PY) -m pip install -q --no-deps pyradplan==0.5.0
	$(PY) -m pip install -q $(DOSE_DEPS)
	@touch $(STAMP)

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

demo: $(STAMP)
	$(PY) pipelines/demo.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache build *.egg-info
