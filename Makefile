# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= demo-out

.PHONY: venv kernels cpp demo demo-quick test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# Native kernels: builds whatever this machine supports and prints what it skipped and why.
kernels: venv
	PYTHON=$(abspath $(PY)) bash kernels/build.sh

demo: venv
	$(VENV)/bin/fcam demo --out $(OUT)

demo-quick: venv
	$(VENV)/bin/fcam demo --out $(OUT) --quick

test: kernels
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build kernels/build $(OUT)
