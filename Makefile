# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= demo-out

.PHONY: venv sysdeps kernels cpp demo demo-quick test test-fast clean

# Debian/Ubuntu packages the native builds need (C++ toolchain, CMake, image codecs for the C++ sample app,
# npm to fetch ONNX Runtime's C/C++ headers). Installed with apt only when missing.
SYSDEPS := g++ cmake libpng-dev libjpeg-dev npm

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

sysdeps:
	@missing=$$(for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi

# Native kernels: builds whatever this machine supports and prints what it skipped and why.
kernels: venv sysdeps
	PYTHON=$(abspath $(PY)) bash kernels/build.sh

# C++ embedding library + sample app (export/cpp), against the onnxruntime wheel in the venv.
cpp: kernels
	PYTHON=$(abspath $(PY)) bash export/cpp/build.sh

demo: venv
	$(VENV)/bin/fcam demo --out $(OUT)

demo-quick: venv
	$(VENV)/bin/fcam demo --out $(OUT) --quick

test: kernels cpp
	FCAM_REQUIRE_CPP=1 $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build kernels/build $(OUT)
