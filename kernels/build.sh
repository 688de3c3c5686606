#!/usr/bin/env bash
# Builds every native part of fcam::cam_postprocess and fcam::lattice_filter that this machine supports, prints what it skipped and
# why, and fails only when something it attempted does not compile. Called by `make kernels` (and so by
# `make test`) as `PYTHON=<venv python> bash kernels/build.sh`.
#
# Parts:
#   1. CMake (kernels/build): CPU launchers, ASan+UBSan launcher test binaries, CUDA launchers (nvcc; every
#      arch in FCAM_CUDA_ARCHS is compiled, which is the CI compile check of the .cu files), ORT custom-op
#      library (headers from the npm package, cached outside the repo), TRT plugin (only with TensorRT headers).
#   2. the lean runtime's compiled core fcam_deploy/_native_cpu*.so (setup.py build_ext --inplace).
#   3. torch extension fcam_deploy/_C.so (torch.utils.cpp_extension, in place, gitignored); CUDA sources are
#      added when FCAM_TORCH_CUDA=1 (or auto: a CUDA torch + nvcc + a visible GPU).
#
# Environment: PYTHON, FCAM_CUDA_HOME (CUDA toolkit root, e.g. /usr/local/cuda-12.6 for JetPack 6; else CUDA_HOME,
# else the nvcc on PATH), FCAM_CUDA_ARCHS (CMake syntax, e.g. "87" or "80-real;90"; default: the line of the
# toolkit's CUDA major version in kernels/cuda_archs.txt), FCAM_CUDA_RUNTIME (Static, the default, or Shared),
# FCAM_BUILD_JOBS, FCAM_ORT_INCLUDE_DIR (skip the npm download), FCAM_ORT_HEADERS_CACHE, TENSORRT_INCLUDE_DIR,
# FCAM_TORCH_CUDA (0/1/auto), FCAM_SKIP_TORCH_EXT=1, FCAM_KERNELS_BUILD_DIR.
#   bash kernels/build.sh --print-cuda-archs   prints the architectures this machine would build, and exits.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
BUILD=${FCAM_KERNELS_BUILD_DIR:-$ROOT/kernels/build}
JOBS=${FCAM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
CUDA_RUNTIME=${FCAM_CUDA_RUNTIME:-Static}
ORT_NPM_PKG=com.github.asus4.onnxruntime@0.4.9   # ORT_API_VERSION 29 headers (ORT >= 1.29)
CACHE=${FCAM_ORT_HEADERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fcam-deploy/ort-headers-0.4.9}
START=$(date +%s)
declare -a REPORT=()
FAILED=0
note() { REPORT+=("$1"); echo "[kernels] $1"; }

# --- CUDA toolkit -----------------------------------------------------------------------------------
CUDA_ROOT=""
if [[ -n "${FCAM_CUDA_HOME:-}" ]]; then
  if [[ ! -x "$FCAM_CUDA_HOME/bin/nvcc" ]]; then
    echo "[kernels] FAILED: FCAM_CUDA_HOME=$FCAM_CUDA_HOME has no bin/nvcc (set it to a CUDA toolkit root)" >&2
    exit 1
  fi
  CUDA_ROOT=$(cd "$FCAM_CUDA_HOME" && pwd)
elif [[ -n "${CUDA_HOME:-}" && -x "${CUDA_HOME}/bin/nvcc" ]]; then
  CUDA_ROOT=$CUDA_HOME
elif command -v nvcc >/dev/null 2>&1; then
  tmpcu=$(mktemp -d)
  echo '__global__ void k(){}' > "$tmpcu/p.cu"
  top=$(cd "$tmpcu" && nvcc -dryrun -c p.cu 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
  rm -rf "$tmpcu"
  [[ -n "$top" && -x "$top/bin/nvcc" ]] && CUDA_ROOT=$(cd "$top" && pwd)
fi
CMAKE_CUDA_ARGS=(-DFCAM_WITH_CUDA=OFF)
ARCHS=""
if [[ -n "$CUDA_ROOT" ]]; then
  CUDA_VERSION=$("$CUDA_ROOT/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  CUDA_MAJOR=${CUDA_VERSION%%.*}
  # Default architectures: the one list in kernels/cuda_archs.txt, by CUDA major version.
  ARCHS=${FCAM_CUDA_ARCHS:-$(sed -n "s/^cuda${CUDA_MAJOR}:[[:space:]]*//p" kernels/cuda_archs.txt)}
  if [[ -z "$ARCHS" ]]; then
    echo "[kernels] FAILED: kernels/cuda_archs.txt has no 'cuda${CUDA_MAJOR}:' line for CUDA $CUDA_VERSION; set FCAM_CUDA_ARCHS" >&2
    exit 1
  fi
  supported=$("$CUDA_ROOT/bin/nvcc" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_//p' | tr '\n' ' ')
  keep=()
  for a in ${ARCHS//;/ }; do
    num=${a%%-*}
    num=${num%[af]}
    if [[ " $supported " == *" $num "* ]]; then keep+=("$a"); else note "SKIP sm_$num: nvcc $CUDA_VERSION does not support it (CUDA 13 dropped < sm_75: build sm_72 with CUDA 12, FCAM_CUDA_HOME)"; fi
  done
  ARCHS=$(IFS=';'; echo "${keep[*]}")
  CMAKE_CUDA_ARGS=(-DFCAM_WITH_CUDA=ON "-DCMAKE_CUDA_COMPILER=$CUDA_ROOT/bin/nvcc" "-DFCAM_CUDA_ARCHS=$ARCHS"
                   "-DCUDAToolkit_ROOT=$CUDA_ROOT" "-DFCAM_CUDA_RUNTIME=$CUDA_RUNTIME")
  note "CUDA $CUDA_VERSION ($CUDA_ROOT), architectures $ARCHS, CUDA runtime linked ${CUDA_RUNTIME,,}: the CUDA libraries need an NVIDIA driver that supports CUDA $CUDA_MAJOR ($( [[ $CUDA_MAJOR -ge 13 ]] && echo '>= 580' || echo '>= 525 for CUDA 12; on Jetson the L4T driver of the JetPack release' ))"
else
  note "SKIP CUDA launcher, ORT CUDA EP kernel, TRT plugin: no nvcc (set FCAM_CUDA_HOME to the toolkit root)"
fi
if [[ "${1:-}" == "--print-cuda-archs" ]]; then
  echo "$ARCHS"
  exit 0
fi

# --- ONNX Runtime headers (npm registry package, never committed) ------------------------------------
ORT_INC=${FCAM_ORT_INCLUDE_DIR:-}
if [[ -z "$ORT_INC" ]]; then
  if [[ -f "$CACHE/onnxruntime_lite_custom_op.h" ]]; then
    ORT_INC=$CACHE
  elif command -v npm >/dev/null 2>&1; then
    tmpnpm=$(mktemp -d)
    if (cd "$tmpnpm" && npm pack --silent "$ORT_NPM_PKG" >/dev/null 2>&1) && \
       tar xzf "$tmpnpm"/*.tgz -C "$tmpnpm" --wildcards \
         'package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers/*.h'; then
      mkdir -p "$CACHE"
      cp "$tmpnpm"/package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers/*.h "$CACHE"/
      ORT_INC=$CACHE
    else
      note "SKIP ORT custom-op library: 'npm pack $ORT_NPM_PKG' failed (offline?); set FCAM_ORT_INCLUDE_DIR"
    fi
    rm -rf "$tmpnpm"
  else
    note "SKIP ORT custom-op library: no npm to fetch the ORT headers; set FCAM_ORT_INCLUDE_DIR"
  fi
fi

TRT_INC=${TENSORRT_INCLUDE_DIR:-}
if [[ -z "$TRT_INC" ]]; then
  for d in /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/local/tensorrt/include /usr/include; do
    [[ -f "$d/NvInferRuntime.h" ]] && TRT_INC=$d && break
  done
fi
[[ -z "$TRT_INC" ]] && note "SKIP TensorRT plugin: no TensorRT headers (NvInferRuntime.h); set TENSORRT_INCLUDE_DIR"

# --- CMake ---------------------------------------------------------------------------------------------
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
if command -v cmake >/dev/null 2>&1; then
  t0=$(date +%s)
  if [[ -f "$BUILD/CMakeCache.txt" ]] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${GEN[1]:-Unix Makefiles}" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD"
  fi
  mkdir -p "$BUILD"
  LOG=$BUILD/fcam-build.log
  if cmake -S kernels -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFCAM_SANITIZE=ON \
        "${CMAKE_CUDA_ARGS[@]}" "-DORT_INCLUDE_DIR=$ORT_INC" "-DTENSORRT_INCLUDE_DIR=$TRT_INC" >"$LOG" 2>&1 \
     && cmake --build "$BUILD" -j "$JOBS" >>"$LOG" 2>&1; then
    grep -h '^-- fcam:' "$LOG" | sed 's/^-- fcam: /[kernels] cmake: /'
    note "BUILT cmake targets in $(( $(date +%s) - t0 )) s: $(cd "$BUILD" && ls libfcam_ort_ops.so libfcam_trt_plugins.so fcam_launcher_test fcam_lattice_test libfcam_cuda.a libfcam_lattice_cuda.a fcam_cuda_launcher_test 2>/dev/null | tr '\n' ' ')"
  else
    tail -40 "$LOG"
    note "FAILED cmake build (log: $LOG)"
    FAILED=1
  fi
else
  note "SKIP CMake targets (ORT library, TRT plugin, launcher test): cmake not found"
fi

if [[ -x "$BUILD/fcam_trt_plugin_test" && -f "$BUILD/libfcam_trt_plugins.so" ]]; then
  if "$BUILD/fcam_trt_plugin_test" "$BUILD/libfcam_trt_plugins.so"; then
    note "PASSED host-only TensorRT plugin test (creators, fields, types, workspace, serialization)"
  else
    note "FAILED host-only TensorRT plugin test"
    FAILED=1
  fi
fi

# --- the compiled core of the lean runtime (fcam_deploy/_native_cpu*.so, in place) ------------------------------
# pip install / pip wheel build it from setup.py; here it is rebuilt in the source tree so an edited launcher is
# what the tests load (editable installs import the package from this tree).
t0=$(date +%s)
if FCAM_BUILD_JOBS=$JOBS "$PYTHON" setup.py -q build_ext --inplace >"${BUILD}/core-build.log" 2>&1; then
  note "BUILT compiled core fcam_deploy/_native_cpu in $(( $(date +%s) - t0 )) s"
else
  tail -30 "${BUILD}/core-build.log"
  note "FAILED compiled core (setup.py build_ext --inplace; log: ${BUILD}/core-build.log)"
  FAILED=1
fi

# --- torch extension -----------------------------------------------------------------------------------
if [[ "${FCAM_SKIP_TORCH_EXT:-0}" == 1 ]]; then
  note "SKIP torch extension: FCAM_SKIP_TORCH_EXT=1"
else
  t0=$(date +%s)
  if CUDA_HOME=$CUDA_ROOT FCAM_CUDA_ARCHS=$ARCHS MAX_JOBS=$JOBS "$PYTHON" kernels/torch/build_ext.py; then
    note "BUILT torch extension in $(( $(date +%s) - t0 )) s"
  else
    note "FAILED torch extension build"
    FAILED=1
  fi
fi

echo "[kernels] ---- summary ($(( $(date +%s) - START )) s) ----"
for line in "${REPORT[@]}"; do echo "[kernels]   $line"; done
exit $FAILED
