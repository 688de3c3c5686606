#!/usr/bin/env bash
# Type-checks fcam-deploy's TensorRT Python code against the `tensorrt-stubs` package, so TensorRT API misuse
# (wrong method, argument count or type, missing enum member) shows on a machine without TensorRT or a GPU.
#   make typecheck-trt            (= PYTHON=.venv/bin/python bash export/tools/typecheck_trt.sh)
# The stubs go into build/trt-stubs (gitignored), NOT into the venv: they ship a `tensorrt` directory without
# __init__.py, i.e. an importable namespace package, which would make `import tensorrt` succeed without TensorRT.
# tensorrt-stubs 10.13.0.35.1 (the only release) has two syntax errors that stop mypy: four parameters named `in`
# (a Python keyword) and `add_scale_nd(..., power=None, channel_axis: int)`; both are patched after the download.
# Errors inside the stubs themselves are not reported (mypy.ini below); what is checked is our code's use of them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
STUBS=${FCAM_TRT_STUBS_DIR:-build/trt-stubs}
VERSION=10.13.0.35.1
FILES=(fcam_deploy/export/tensorrt.py fcam_deploy/runtime/trt_support.py fcam_deploy/runtime/tensorrt.py fcam_deploy/cli/doctor.py)
T0=$(date +%s)

if [[ ! -f "$STUBS/.fcam-ready-$VERSION" ]]; then
  rm -rf "$STUBS"
  "$PY" -m pip install -q --no-deps --disable-pip-version-check --target "$STUBS" "tensorrt-stubs==$VERSION"
  PYI="$STUBS/tensorrt_bindings/tensorrt.pyi"
  sed -i -E 's/([(,] *)in: /\1in_: /g; s/(power: Weights = None, channel_axis: int)\)/\1 = ...)/' "$PYI"
  "$PY" -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" "$PYI" \
    || { echo "typecheck-trt: $PYI still does not parse after the known fixes" >&2; exit 1; }
  cat > "$STUBS/mypy.ini" <<'INI'
[mypy]
follow_imports = silent
ignore_missing_imports = True
check_untyped_defs = True
warn_unused_ignores = False
[mypy-tensorrt_bindings.*]
ignore_errors = True
[mypy-tensorrt]
ignore_errors = True
INI
  touch "$STUBS/.fcam-ready-$VERSION"
fi
MYPYPATH="$STUBS" "$PY" -m mypy --config-file "$STUBS/mypy.ini" "${FILES[@]}"
echo "typecheck-trt: ${FILES[*]} checked against tensorrt-stubs $VERSION in $(( $(date +%s) - T0 )) s"
