# Set-up and the two everyday commands: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

install: $(STAMP)

# torch goes first, pinned: the CPU wheel of 2.13.0 is what the machines carry,
# and any looser requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/seqtransfer demo --out demo_run

test: install
	$(PY) -m pytest

# ruff (lint and format) and mypy on src/, and the import-linter layers contract
.PHONY: lint
lint: install
	$(PY) -m pip install -q -e ".[lint]"
	$(VENV)/bin/ruff check src
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# the documentation, into site/ (warnings are errors): see docs/index.md
.PHONY: docs
docs: install
	$(PY) -m pip install -q -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf demo_run .pytest_cache
	rm -rf site
