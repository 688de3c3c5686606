#!/usr/bin/env bash
# Cross-compile fcam-deploy's native CPU code for aarch64 (the CPU of every Jetson) and run it under qemu-user:
#
#   export/cpp/cross/aarch64.sh [--exact|--close MODEL.onnx IMAGE...]
#
#   1. kernels/: the CPU launcher of cam_postprocess and its test binary fcam_launcher_test (+ the ONNX Runtime
#      custom-op library when the ORT headers are cached);
#   2. export/cpp: libfcam_localizer + fcam_localize, linked against ONNX Runtime's aarch64 library taken from its
#      PyPI wheel (pip download; cached in ~/.cache/fcam-deploy/ort-aarch64-$ORT_VERSION, never committed);
#   3. under qemu-aarch64: fcam_launcher_test (golden cases, plus CASES.bin when $FCAM_LAUNCHER_CASES names one);
#   4. with MODEL and IMAGEs: fcam_localize --json --save-maps on x86-64 (export/cpp/build, built if missing) and on
#      aarch64 under qemu, compared by compare_runs.py: --exact (default): the JSON lines and every map / mask file
#      byte-identical (for a graph whose arithmetic is exact on both CPUs, e.g. demo_model.py's exact_arith.onnx);
#      --close: a convolutional network, whose ONNX Runtime kernels sum in another order on NEON than on AVX: same
#      classes and boxes, logits / scores / maps within 1e-4, masks equal except at pixels within 1e-4 of the
#      threshold; the summary says what was exactly equal.
#
# Needs (Debian/Ubuntu): g++-aarch64-linux-gnu qemu-user, and through multiarch (dpkg --add-architecture arm64)
# libpng-dev:arm64 libjpeg-dev:arm64 libstdc++6:arm64 (which bring libc6:arm64, the loader the programs run with);
# cmake; pip (to download the wheel); the ORT headers as for build.sh.
# Exit 0: everything built, ran and matched; 1: a mismatch or a failing test; 3: a prerequisite is missing (the
# message names the package), so callers can skip.
#
# Emulation: the programs run with the multiarch arm64 loader and libraries of the host (/lib/ld-linux-aarch64.so.1,
# /usr/lib/aarch64-linux-gnu). Not with the cross toolchain's /usr/aarch64-linux-gnu as qemu's -L prefix: its ld.so
# is another glibc build than the multiarch libc.so.6 the loader then finds, and pthread_create loops forever on the
# mismatched loader state. qemu-user 7.2 (Debian 12) hands the guest the HOST's /proc/cpuinfo (x86 text), on which
# the cpuinfo library inside ONNX Runtime crashes in its static initialisation (SIGSEGV before main); the guest is
# therefore given a prefix ($BUILD/qemu-sysroot, QEMU_LD_PREFIX) holding only proc/cpuinfo, describing Jetson Orin's
# Cortex-A78AE cores (one entry per host CPU, so it agrees with /sys). qemu runs with -cpu cortex-a76 (ARMv8.2 +
# dotprod + fp16, the closest model qemu 7.2 has to the A78AE).
#
# Environment: PYTHON (for pip and the x86 build), ORT_VERSION (default: the installed onnxruntime's),
# FCAM_AARCH64_BUILD (default export/cpp/build-aarch64), JOBS (default 2), QEMU_CPU (default cortex-a76).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CPP="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$CPP/../.." && pwd)"
BUILD="${FCAM_AARCH64_BUILD:-$CPP/build-aarch64}"
TOOLCHAIN="$CPP/cmake/aarch64-linux-gnu.cmake"
JOBS="${JOBS:-2}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export QEMU_CPU="${QEMU_CPU:-cortex-a76}"
START=$(date +%s)
say() { echo "[aarch64] $*"; }
missing() { echo "[aarch64] MISSING: $*" >&2; exit 3; }

# --- prerequisites ----------------------------------------------------------------------------------------------
command -v aarch64-linux-gnu-g++ >/dev/null || missing "aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)"
command -v qemu-aarch64 >/dev/null || missing "qemu-aarch64 (apt-get install qemu-user)"
command -v cmake >/dev/null || missing "cmake"
for lib in libpng16.so libjpeg.so libstdc++.so.6; do
  [[ -e "/usr/lib/aarch64-linux-gnu/$lib" ]] || missing "arm64 $lib (dpkg --add-architecture arm64 && apt-get update && apt-get install libpng-dev:arm64 libjpeg-dev:arm64 libstdc++6:arm64)"
done
[[ -e /lib/ld-linux-aarch64.so.1 ]] || missing "the arm64 loader /lib/ld-linux-aarch64.so.1 (apt-get install libc6:arm64)"

# --- the guest's view: an arm64 /proc/cpuinfo ------------------------------------------------
export QEMU_LD_PREFIX="$BUILD/qemu-sysroot"
rm -rf "$QEMU_LD_PREFIX"
mkdir -p "$QEMU_LD_PREFIX/proc"
ncpu=$(( $(sed -n 's/.*-\([0-9]*\)$/\1/p; s/^\([0-9]*\)$/\1/p' /sys/devices/system/cpu/possible 2>/dev/null | tail -1) + 1 ))
[[ $ncpu -ge 1 ]] || ncpu=$(nproc)
for ((i = 0; i < ncpu; i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$i"
done >"$QEMU_LD_PREFIX/proc/cpuinfo"

# --- ONNX Runtime for aarch64 from its wheel --------------------------------------------------------------------
ORT_VERSION="${ORT_VERSION:-$("$PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)')}"
ORT_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/fcam-deploy/ort-aarch64-$ORT_VERSION"
ORT_SO="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
if [[ ! -f "$ORT_SO" ]]; then
  mkdir -p "$ORT_DIR"
  say "downloading the onnxruntime $ORT_VERSION aarch64 wheel (pip download)"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_27_aarch64 \
      --platform manylinux_2_28_aarch64 --python-version 3.11 "onnxruntime==$ORT_VERSION" -d "$ORT_DIR" \
    || missing "the onnxruntime $ORT_VERSION aarch64 wheel (pip download failed: offline?)"
  "$PYTHON" - "$ORT_DIR" "$ORT_VERSION" <<'PY'
import pathlib, sys, zipfile
root, version = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next(root.glob(f"onnxruntime-{version}-*aarch64.whl"))
with zipfile.ZipFile(wheel) as z:
    for name, out in ((f"onnxruntime/capi/libonnxruntime.so.{version}", f"libonnxruntime.so.{version}"),
                      ("onnxruntime/LICENSE", "LICENSE")):
        (root / out).write_bytes(z.read(name))
wheel.unlink()
PY
fi
say "ONNX Runtime $ORT_VERSION aarch64: $ORT_SO"

# --- 1. kernels/ for aarch64 ------------------------------------------------------------------------------------
ORT_INC="${FCAM_ORT_INCLUDE_DIR:-${FCAM_ORT_HEADERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fcam-deploy/ort-headers-0.4.9}}"
[[ -f "$ORT_INC/onnxruntime_lite_custom_op.h" ]] || ORT_INC=""
mkdir -p "$BUILD"
t0=$(date +%s)
cmake -S "$REPO/kernels" -B "$BUILD/kernels" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release \
  -DFCAM_WITH_CUDA=OFF -DFCAM_SANITIZE=OFF "-DORT_INCLUDE_DIR=$ORT_INC" >"$BUILD/kernels-configure.log" 2>&1 \
  || { cat "$BUILD/kernels-configure.log" >&2; exit 1; }
targets=(fcam_cpu fcam_launcher_test)
[[ -n "$ORT_INC" ]] && targets+=(fcam_ort_ops)
cmake --build "$BUILD/kernels" -j "$JOBS" --target "${targets[@]}" >"$BUILD/kernels-build.log" 2>&1 \
  || { tail -40 "$BUILD/kernels-build.log" >&2; exit 1; }
say "built kernels for aarch64 in $(( $(date +%s) - t0 )) s: ${targets[*]}"

# --- 2. export/cpp for aarch64 ----------------------------------------------------------------------------------
t0=$(date +%s)
PYTHON="$PYTHON" FCAM_CPP_BUILD="$BUILD/cpp" ORT_LIBRARY="$ORT_SO" ORT_LICENSE="$ORT_DIR/LICENSE" \
  CMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" JOBS="$JOBS" bash "$CPP/build.sh" >"$BUILD/cpp-build.log" 2>&1 \
  || { tail -40 "$BUILD/cpp-build.log" >&2; exit 1; }
APP="$BUILD/cpp/install/bin/fcam_localize"
file_out="$(file -b "$APP" 2>/dev/null || true)"
say "built libfcam_localizer + fcam_localize for aarch64 in $(( $(date +%s) - t0 )) s ${file_out:+($file_out)}"
[[ -z "$file_out" || "$file_out" == *aarch64* ]] || { echo "[aarch64] $APP is not an aarch64 binary" >&2; exit 1; }

# --- 3. the launcher test binary under emulation ----------------------------------------------------------------
t0=$(date +%s)
qemu-aarch64 "$BUILD/kernels/fcam_launcher_test" ${FCAM_LAUNCHER_CASES:+"$FCAM_LAUNCHER_CASES"}
say "fcam_launcher_test passed under qemu-aarch64 in $(( $(date +%s) - t0 )) s"

# --- 4. fcam_localize on aarch64 == on x86-64 ---------------------------------------------------------------------
mode=exact
case "${1:-}" in
  --exact) mode=exact; shift ;;
  --close) mode=close; shift ;;
esac
if [[ $# -ge 2 ]]; then
  MODEL="$1"
  shift
  X86_APP="$CPP/build/install/bin/fcam_localize"
  if [[ ! -x "$X86_APP" ]]; then
    PYTHON="$PYTHON" JOBS="$JOBS" bash "$CPP/build.sh" >"$BUILD/x86-build.log" 2>&1 \
      || { tail -40 "$BUILD/x86-build.log" >&2; exit 1; }
  fi
  OUT="$BUILD/compare/$(basename "$MODEL" .onnx)"
  rm -rf "$OUT"
  mkdir -p "$OUT/x86_64" "$OUT/aarch64"
  # the same thread budget on both sides (results are identical for every budget, but the JSON records it)
  "$X86_APP" --json --batch --threads 2 --save-maps "$OUT/x86_64" "$MODEL" "$@" >"$OUT/x86_64.jsonl"
  t0=$(date +%s)
  qemu-aarch64 "$APP" --json --batch --threads 2 --save-maps "$OUT/aarch64" "$MODEL" "$@" >"$OUT/aarch64.jsonl"
  say "fcam_localize ran $(basename "$MODEL") on $# image(s) under qemu-aarch64 in $(( $(date +%s) - t0 )) s"
  "$PYTHON" "$HERE/compare_runs.py" "--$mode" "$OUT/x86_64" "$OUT/aarch64"
fi
say "done in $(( $(date +%s) - START )) s"
