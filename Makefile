# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Each creates the virtual environment and installs what it needs when missing.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip warns about every package missing from the local extra indexes: keep its output readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.14.1
# Build the CUDA kernels too (nvcc and torch's CUDA build are on our machines; no GPU is
# needed to compile) and fail loudly if they do not build. SNNTORCH_CLIF_CUDA=0 make ... skips them.
export SNNTORCH_CLIF_CUDA ?= 1
# Changes to these need a reinstall (the C++/CUDA extension is compiled at install time).
BUILD_INPUTS := setup.py setup.cfg pyproject.toml $(shell find snntorch_clif/csrc -type f 2>/dev/null)
STAMP := $(VENV)/.snntorch-clif-installed

.PHONY: install demo test lint

$(STAMP): $(BUILD_INPUTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q "$(TORCH_SPEC)" setuptools wheel ninja $(QUIET_PIP)
	$(PIP) install -q --no-build-isolation -e ".[demo,test,docs]" $(QUIET_PIP)
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null; } || echo "note: no chromium; the docs browser test will skip"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m snntorch_clif.demo $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
