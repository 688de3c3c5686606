#!/usr/bin/env bash
# The GPU legs in one command (issues 11 and 14), on a machine with an NVIDIA GPU, torch with CUDA, nvcc, cmake and
# ninja (nothing is downloaded; TensorRT and onnxruntime-gpu are not needed):
#   bash kernels/gpu/run_all.sh [OUTDIR] [gpu_check.py options]     OUTDIR defaults to benchmarks/results/gpu
# Builds the torch extension (local arch) and fcam_cuda_launcher_test, runs every check of kernels/gpu/gpu_check.py
# (each in its own time-boxed process; global limit 480 s, hard stop at 530 s) and writes OUTDIR/gpu_check.json and
# OUTDIR/gpu_check.md. Exit 0 only when no check failed, errored or timed out. PYTHON selects the interpreter.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-benchmarks/results/gpu}
[[ $# -gt 0 ]] && shift
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
exec timeout --kill-after=10 530 "$PY" kernels/gpu/gpu_check.py --out "$OUT" "$@"
