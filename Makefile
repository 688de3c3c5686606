# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= demo-out

.PHONY: venv sysdeps kernels cpp aarch64 aarch64-deps demo demo-quick lint test test-fast typecheck-trt clean

# What the native builds need (C++ toolchain, CMake, image codecs for the C++ sample app, npm to fetch ONNX
# Runtime's C/C++ headers). Tools count as present when on PATH (npm may come with a non-Debian Node.js);
# libraries when their Debian -dev package is installed. Missing ones are installed with apt.
TOOLS   := g++ cmake npm
DEVLIBS := libpng-dev libjpeg-dev

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

sysdeps:
	@missing=""; \
	for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	for p in $(DEVLIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Native kernels: builds whatever this machine supports and prints what it skipped and why.
kernels: venv sysdeps
	PYTHON=$(abspath $(PY)) bash kernels/build.sh

# C++ embedding library + sample app (export/cpp), against the onnxruntime wheel in the venv.
cpp: kernels
	PYTHON=$(abspath $(PY)) bash export/cpp/build.sh

# aarch64 (the CPU of every Jetson): cross-compile kernels/ and export/cpp with Debian's g++-aarch64-linux-gnu
# against ONNX Runtime's aarch64 wheel library, run the launcher test and fcam_localize under qemu-user and compare
# with the x86-64 build (export/cpp/cross/aarch64.sh; README: export/README.md). aarch64-deps adds the arm64
# architecture (multiarch) and installs what is missing.
AARCH64_DEBS := g++-aarch64-linux-gnu qemu-user libpng-dev:arm64 libjpeg-dev:arm64 libstdc++6:arm64
AARCH64_OUT  := build/aarch64

aarch64-deps:
	@missing=""; \
	for p in $(AARCH64_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  dpkg --print-foreign-architectures | grep -qx arm64 || $$SUDO dpkg --add-architecture arm64; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

aarch64: cpp aarch64-deps
	$(PY) export/cpp/cross/demo_model.py $(AARCH64_OUT)
	PYTHON=$(abspath $(PY)) bash export/cpp/cross/aarch64.sh --exact $(AARCH64_OUT)/exact_arith.onnx $(AARCH64_OUT)/img*
	PYTHON=$(abspath $(PY)) bash export/cpp/cross/aarch64.sh --close $(AARCH64_OUT)/demo_like.onnx $(AARCH64_OUT)/img*

# the demo's closing benchmark measures the native post-processing: build it first (never a silent fallback)
demo: venv kernels
	$(VENV)/bin/fcam demo --out $(OUT)

demo-quick: venv kernels
	$(VENV)/bin/fcam demo --out $(OUT) --quick

# Lint and type checks, zero findings (settings: [tool.ruff] and [tool.mypy] in pyproject.toml; tool versions pinned
# in constraints.txt, since a ruff release can change its default rule set). About 30 s on 2 cores.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# lint first: a finding fails `make test` (and CI) before the long part
test: lint kernels cpp
	FCAM_REQUIRE_CPP=1 FCAM_REQUIRE_KERNELS=1 $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

# TensorRT Python code type-checked against tensorrt-stubs (downloaded into build/trt-stubs; not in `make test`:
# the stubs are not in the offline package index CI uses).
typecheck-trt: venv
	PYTHON=$(abspath $(PY)) bash export/tools/typecheck_trt.sh

clean:
	rm -rf $(VENV) build kernels/build $(OUT)
