#!/usr/bin/env bash
# Create the separate ModelOpt tool environment used by export/tools/precision.py (not part of CI).
#
# ModelOpt's [onnx] extra pins onnx~=1.21 and onnxruntime-gpu~=1.24 (plus cupy), which clash with the project's
# onnx/onnxruntime pins, so it lives in its own venv: export/tools/.venv (ignored by git).
# Usage: bash export/tools/setup_modelopt_env.sh [PYTHON]   (default python3; needs Python >= 3.10)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${1:-python3}"
venv="$here/.venv"
MODELOPT_VERSION="${MODELOPT_VERSION:-0.47.0}"
# modelopt needs torch (>= 2.8); a CPU build is enough for ONNX PTQ / AutoCast. Default: the CPU wheel when pip can
# find one (find-links / a local wheel house), else set TORCH_SPEC, e.g. TORCH_SPEC="torch==2.14.1".
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"

rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first, so the resolver reuses it (a local CPU wheel via pip's find-links when there is one)
"$venv/bin/python" -m pip install -q "$TORCH_SPEC" numpy pillow safetensors scipy opencv-python-headless
"$venv/bin/python" -m pip install -q "nvidia-modelopt[onnx]==${MODELOPT_VERSION}"
# the project itself without its dependencies: precision.py uses its data reader, metrics and runtime
"$venv/bin/python" -m pip install -q --no-deps -e "$repo"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("nvidia-modelopt", "onnx", "onnxruntime-gpu", "onnxruntime", "torch", "numpy"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PY
echo "ModelOpt tool env ready: $venv"
