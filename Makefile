# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= demo-out

.PHONY: venv sysdeps kernels cpp demo demo-quick test test-fast typecheck-trt clean

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

# the demo's closing benchmark measures the native post-processing: build it first (never a silent fallback)
demo: venv kernels
	$(VENV)/bin/fcam demo --out $(OUT)

demo-quick: venv kernels
	$(VENV)/bin/fcam demo --out $(OUT) --quick

test: kernels cpp
	FCAM_REQUIRE_CPP=1 FCAM_REQUIRE_KERNELS=1 $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

# TensorRT Python code type-checked against tensorrt-stubs (downloaded into build/trt-stubs; not in `make test`:
# the stubs are not in the offline package index CI uses).
typecheck-trt: venv
	PYTHON=$(abspath $(PY)) bash export/tools/typecheck_trt.sh

clean:
	rm -rf $(VENV) build kernels/build $(OUT)
