# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Each creates the virtual environment and installs what it needs when missing.
# `make gpu-check`: on a GPU machine, build for that GPU, run the CUDA tests and the GPU benchmark.
# GNU make 3.81 (macOS) ignores .SHELLFLAGS: recipes that pipe set pipefail themselves.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip warns about every package missing from the local extra indexes: keep its output readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.14.1
EXTRAS ?= demo,test,docs,tutorials
# Changes to these need a reinstall (the C++/CUDA extension is compiled at install time).
BUILD_INPUTS := setup.py setup.cfg pyproject.toml snntorch_clif/_build.py $(shell find snntorch_clif/csrc -type f 2>/dev/null)
# nvcc where the build looks for it (snntorch_clif/_build.py, find_cuda_home): $CUDA_HOME or
# $CUDA_PATH when set, else /usr/local/cuda, else PATH. Empty when there is none.
NVCC := $(shell for d in "$$CUDA_HOME" "$$CUDA_PATH"; do if [ -n "$$d" ]; then [ -x "$$d/bin/nvcc" ] && echo "$$d/bin/nvcc"; exit 0; fi; done; \
	if [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda/bin/nvcc; else command -v nvcc; fi)
# `make test` builds the CUDA kernel when nvcc is there (SNNTORCH_CLIF_CUDA=0/1 overrides;
# .ci/run sets 1); without it the CPU kernel alone, and the tests of the compiled CUDA kernel
# skip (the CUDA source still runs on the CPU through tests/cuda_emulator.py).
CUDA_SWITCH := $(strip $(SNNTORCH_CLIF_CUDA))
TEST_CUDA := $(if $(filter 1 true yes on,$(CUDA_SWITCH)),1,$(if $(filter 0 false no off,$(CUDA_SWITCH)),0,$(if $(NVCC),1,0)))
# Three installs, one stamp each, so each target gets the build it needs (the newest one wins):
# - LOCAL_STAMP (make demo, make install): what runs on this machine. The CUDA kernel is built
#   only when a GPU is visible (for that GPU); a first `make demo` on a laptop does not wait for
#   CUDA code it cannot run. SNNTORCH_CLIF_CUDA=0/1 in the environment overrides.
# - CUDA_STAMP (make test with nvcc): the CPU and the CUDA kernels for every default
#   architecture, failing loudly if they do not build (no GPU is needed to compile). It serves
#   `make demo` too.
# - CPU_STAMP (make test without nvcc, or SNNTORCH_CLIF_CUDA=0): the CPU kernel alone.
LOCAL_STAMP := $(VENV)/.snntorch-clif-installed
CUDA_STAMP := $(VENV)/.snntorch-clif-installed-cuda
CPU_STAMP := $(VENV)/.snntorch-clif-installed-cpu
TEST_STAMP := $(if $(filter 1,$(TEST_CUDA)),$(CUDA_STAMP),$(CPU_STAMP))

ifneq ($(filter test lint,$(MAKECMDGOALS)),)
ifeq ($(TEST_CUDA),1)
$(info make test: building the CPU and the CUDA kernels (nvcc: $(or $(NVCC),none found: the build will fail)))
else ifeq ($(NVCC),)
$(info make test: no nvcc found (CUDA_HOME, CUDA_PATH, /usr/local/cuda, PATH): CPU kernel only; the tests of the compiled CUDA kernel skip, its source still runs on the CPU emulator)
else
$(info make test: SNNTORCH_CLIF_CUDA=$(CUDA_SWITCH): CPU kernel only; the tests of the compiled CUDA kernel skip, its source still runs on the CPU emulator)
endif
endif

# $(1): the SNNTORCH_CLIF_CUDA value for the package build (shell text)
define install_package
	test -x $(PY) || python3 -m venv $(VENV)
	set -o pipefail; $(PIP) install -q "$(TORCH_SPEC)" setuptools wheel ninja $(QUIET_PIP)
	set -o pipefail; SNNTORCH_CLIF_CUDA=$(1) $(PIP) install -q --no-build-isolation -e ".[$(EXTRAS)]" $(QUIET_PIP)
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: no chromium (Debian's package); the docs browser test will skip"
endef

$(LOCAL_STAMP): $(BUILD_INPUTS)
	$(call install_package,$${SNNTORCH_CLIF_CUDA:-$$(test -x $(PY) && $(PY) -c 'import torch; print("auto" if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)})
	rm -f $(CUDA_STAMP) $(CPU_STAMP)
	touch $@

$(CUDA_STAMP): $(BUILD_INPUTS)
	$(call install_package,1)
	rm -f $(CPU_STAMP)
	touch $@ $(LOCAL_STAMP)

$(CPU_STAMP): $(BUILD_INPUTS)
	$(call install_package,0)
	rm -f $(CUDA_STAMP)
	touch $@ $(LOCAL_STAMP)

install: $(LOCAL_STAMP)

demo: $(LOCAL_STAMP)
	$(PY) -m snntorch_clif.demo $(ARGS)

lint: $(TEST_STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# On a GPU machine with PyTorch (CUDA build), nvcc and pytest, and no package index: build the
# kernels in place for the visible GPU, run every CUDA test, run the GPU benchmark (JSON into
# benchmarks/results/). snnTorch, when missing, is installed from a wheel in .whl/ (--no-index).
# Uses GPU_PYTHON as it is: no virtual environment, nothing downloaded.
GPU_PYTHON ?= python3
GPU_TESTS = $(sort $(wildcard tests/test_cuda*.py) $(shell grep -l 'mark.cuda' tests/test_*.py))
gpu-check:
	@$(GPU_PYTHON) -c 'import torch, sys; torch.cuda.is_available() or sys.exit("make gpu-check: no CUDA GPU is visible to torch " + torch.__version__ + " (" + sys.executable + ")")'
	$(GPU_PYTHON) -c 'import snntorch' 2>/dev/null || $(GPU_PYTHON) -m pip install --no-index --no-deps --no-build-isolation .whl/*.whl
	arch=$$($(GPU_PYTHON) -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())') && \
		echo "make gpu-check: building for compute capability $$arch" && \
		SNNTORCH_CLIF_CUDA=1 TORCH_CUDA_ARCH_LIST="$$arch" $(GPU_PYTHON) setup.py -q build_ext --inplace
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -c 'import snntorch_clif as s; r = s.backends(); print(r); assert r.devices["cuda"] == "fused", r'
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest -p no:cacheprovider -q -m cuda $(GPU_TESTS)
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest -p no:cacheprovider -q $(wildcard tests/test_cuda*.py) tests/test_build.py tests/test_bench_gpu.py
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/bench_gpu.py $(BENCH_ARGS)

# Another torch than the pinned one (setup.cfg promises torch>=2.4): a venv of its own under
# /tmp, the CPU kernel built in a clean copy of HEAD, then the op, functional, module,
# torch.compile and snntorch.backprop tests (CPU and emulated CUDA). Downloads that torch and
# its CUDA libraries (~3 GB); not run by CI.
#   make torch-compat TORCH_COMPAT=2.11.0
TORCH_COMPAT ?= 2.11.0
COMPAT_DIR := /tmp/snntorch-clif-torch-$(TORCH_COMPAT)
torch-compat:
	rm -rf $(COMPAT_DIR)/src && mkdir -p $(COMPAT_DIR) && git clone -q $(CURDIR) $(COMPAT_DIR)/src
	test -x $(COMPAT_DIR)/venv/bin/python || python3 -m venv $(COMPAT_DIR)/venv
	$(COMPAT_DIR)/venv/bin/python -m pip install -q "torch==$(TORCH_COMPAT)" "snntorch>=1.0" numpy pytest hypothesis setuptools wheel ninja $(QUIET_PIP)
	cd $(COMPAT_DIR)/src && SNNTORCH_CLIF_CUDA=0 $(COMPAT_DIR)/venv/bin/python setup.py -q build_ext --inplace
	cd $(COMPAT_DIR)/src && $(COMPAT_DIR)/venv/bin/python -m pytest -p no:cacheprovider -q \
		tests/test_ops.py tests/test_functional.py tests/test_neuron.py tests/test_compile.py tests/test_snntorch_backprop.py
