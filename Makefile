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

# ruff (lint and format) on src, tests, benchmarks and docs; mypy on src/; the import-linter layers contract
.PHONY: lint
lint: install
	$(PY) -m pip install -q -e ".[lint]"
	$(VENV)/bin/ruff check src tests benchmarks docs
	$(VENV)/bin/ruff format --check src tests benchmarks docs
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# the documentation, into site/ (warnings are errors): see docs/index.md
.PHONY: docs
docs: install
	$(PY) -m pip install -q -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict

# nnU-Net v2 in a virtual environment of its own (the `nnunet` extra, versions in
# .ci/nnunet-constraints.txt), then the tests that run nnU-Net on what seqtransfer exports and
# check the import against nnU-Net's own network (tests/nnunet, marker nnunet; ~6 min)
NNUNET_VENV := .venv-nnunet
NNUNET_PY := $(NNUNET_VENV)/bin/python
.PHONY: check-nnunet
check-nnunet:
	@test -x $(NNUNET_PY) || $(PYTHON) -m venv $(NNUNET_VENV) || python3 -m venv $(NNUNET_VENV)
	$(NNUNET_PY) -m pip install -q --upgrade pip
	$(NNUNET_PY) -m pip install -q torch==2.13.0
	$(NNUNET_PY) -m pip install -q -c .ci/nnunet-constraints.txt -e ".[nnunet,test]"
	$(NNUNET_PY) -m pytest -p no:cacheprovider -rs -m nnunet tests/nnunet

# the protocol on a Ray cluster of several nodes on this machine, one of them removed mid-run
# and a killed pool driver and Ray worker (tests/experiment/test_experiment_cluster.py, marker
# cluster; ~3 min, so not in `make test`)
.PHONY: check-cluster
check-cluster: install
	$(PY) -m pytest -p no:cacheprovider -rs -m cluster tests/experiment/test_experiment_cluster.py tests/experiment/test_experiment_ray.py

clean:
	rm -rf demo_run .pytest_cache
	rm -rf site
	rm -rf $(WHEELHOUSE)

# Offline install (README, "Install on a cluster"): the project's wheel and sdist and a wheel of
# every dependency in $(WHEELHOUSE)/, then on a machine without network
#   pip install --no-index --find-links wheelhouse seqtransfer
# TORCH_SPEC chooses the torch build (default: the CPU build that `install` uses, from this
# machine's wheels); a CUDA build from PyTorch's index, for example:
#   make wheelhouse TORCH_SPEC=torch==2.13.0+cu128 TORCH_INDEX=https://download.pytorch.org/whl/cu128
# EXTRAS=ray (comma-separated) adds the wheels of those extras.
WHEELHOUSE ?= wheelhouse
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?=

.PHONY: wheelhouse check-offline
wheelhouse: install
	rm -rf $(WHEELHOUSE)
	$(PY) -m build -q --outdir $(WHEELHOUSE) .
	$(PY) -m pip wheel -q --wheel-dir $(WHEELHOUSE) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		"$(TORCH_SPEC)" "setuptools>=77" "$$(ls $(WHEELHOUSE)/seqtransfer-*.whl)$(if $(EXTRAS),[$(EXTRAS)])"
	@du -sh $(WHEELHOUSE); ls $(WHEELHOUSE) | wc -l

# the wheelhouse installed into a fresh virtual environment inside a network namespace without
# network (unshare -n; needs root), then `seqtransfer --help` and a tiny `adapt` run there
check-offline: wheelhouse
	SEQTRANSFER_WHEELHOUSE=$(abspath $(WHEELHOUSE)) $(PY) -m pytest -p no:cacheprovider -rs tests/release/test_install.py
