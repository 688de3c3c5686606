#!/usr/bin/env bash
# Build (and install into the build folder) the fcam_localizer C++ library and the fcam_localize sample app.
#
#   export/cpp/build.sh            # -> export/cpp/build/install/{bin/fcam_localize,lib,include,lib/cmake}
#
# Needs: cmake >= 3.16, a C++17 compiler, libpng + libjpeg headers (Debian: apt-get install libpng-dev
# libjpeg-dev), npm (to fetch ONNX Runtime's C/C++ headers), and a Python with the onnxruntime wheel (its
# capi/libonnxruntime.so.* is the library we link). Nothing is vendored: the headers are downloaded into the build
# folder (npm package com.github.asus4.onnxruntime, ORT C API v29, usable with ORT >= 1.29).
#
# Environment: PYTHON (default: the repo's .venv/bin/python, else python3), FCAM_CPP_BUILD (build folder),
# ORT_HEADERS_DIR (use these headers instead of downloading), ORT_LIBRARY (link this libonnxruntime.so.* instead of
# the wheel's, e.g. the aarch64 one; ORT_LICENSE its license file), TENSORRT_ROOT (enables the TensorRT backend when
# it holds include/NvInfer.h and lib/libnvinfer.so), CMAKE_BUILD_TYPE (default Release), JOBS (default 2),
# FCAM_CPP_SANITIZE=1 (ASan + UBSan build), CMAKE_TOOLCHAIN_FILE (cross builds, see export/cpp/cmake/).
# The install tree is relocatable: libonnxruntime.so.1 is copied next to the library, RUNPATHs are $ORIGIN-relative.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILD="${FCAM_CPP_BUILD:-$HERE/build}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
ORT_NPM_PACKAGE="com.github.asus4.onnxruntime"
ORT_NPM_VERSION="0.4.9"
ORT_NPM_HEADERS="package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers"

mkdir -p "$BUILD/ort/include" "$BUILD/ort/lib"

# Shared with kernels/build.sh, so one machine downloads the npm package once.
CACHE="${FCAM_ORT_HEADERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fcam-deploy/ort-headers-$ORT_NPM_VERSION}"
if [[ -n "${ORT_HEADERS_DIR:-}" ]]; then
  cp "$ORT_HEADERS_DIR"/*.h "$BUILD/ort/include/"
elif [[ ! -f "$BUILD/ort/include/onnxruntime_cxx_api.h" && -f "$CACHE/onnxruntime_cxx_api.h" ]]; then
  cp "$CACHE"/*.h "$BUILD/ort/include/"
elif [[ ! -f "$BUILD/ort/include/onnxruntime_cxx_api.h" ]]; then
  command -v npm >/dev/null || { echo "build.sh: npm is needed to fetch the ONNX Runtime headers (or set ORT_HEADERS_DIR)" >&2; exit 1; }
  echo "build.sh: fetching ONNX Runtime headers from npm ($ORT_NPM_PACKAGE@$ORT_NPM_VERSION)"
  tmp="$(mktemp -d "$BUILD/ort/npm.XXXXXX")"
  (cd "$tmp" && npm pack --silent "$ORT_NPM_PACKAGE@$ORT_NPM_VERSION" >/dev/null \
     && tar xzf "$ORT_NPM_PACKAGE-$ORT_NPM_VERSION.tgz" --wildcards "$ORT_NPM_HEADERS/*.h")
  cp "$tmp/$ORT_NPM_HEADERS"/*.h "$BUILD/ort/include/"
  mkdir -p "$CACHE" && cp "$tmp/$ORT_NPM_HEADERS"/*.h "$CACHE/"
  rm -rf "$tmp"
fi

if [[ -n "${ORT_LIBRARY:-}" ]]; then
  ORT_LIB="$ORT_LIBRARY"
  ORT_VERSION="(ORT_LIBRARY)"
  ORT_LIC="${ORT_LICENSE:-}"
else
  ORT_LIB="$("$PYTHON" - <<'PY'
import pathlib, sys
import onnxruntime
capi = pathlib.Path(onnxruntime.__file__).parent / "capi"
libs = sorted(p for p in capi.glob("libonnxruntime.so*") if p.is_file())
if not libs:
    sys.exit(f"no libonnxruntime.so* in {capi}")
print(libs[-1])
PY
)"
  ORT_VERSION="$("$PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)')"
  ORT_LIC="$("$PYTHON" - <<'PY'
from importlib import metadata
dist = metadata.distribution("onnxruntime")
for f in dist.files or []:
    if f.name.upper().startswith("LICENSE"):
        print(dist.locate_file(f))
        break
PY
)"
fi
# The wheel ships only libonnxruntime.so.X.Y.Z; the SONAME is libonnxruntime.so.1, so give the linker both names.
ln -sf "$ORT_LIB" "$BUILD/ort/lib/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.1" "$BUILD/ort/lib/libonnxruntime.so"
echo "build.sh: ONNX Runtime $ORT_VERSION from $ORT_LIB"

extra=()
if [[ -n "${TENSORRT_ROOT:-}" ]]; then extra+=("-DTENSORRT_ROOT=$TENSORRT_ROOT"); fi
if [[ -n "${ORT_LIC:-}" && -f "$ORT_LIC" ]]; then extra+=("-DONNXRUNTIME_LICENSE=$ORT_LIC"); fi
if [[ "${FCAM_CPP_SANITIZE:-0}" == 1 ]]; then extra+=("-DFCAM_LOCALIZER_SANITIZE=ON"); fi
if [[ -n "${CMAKE_TOOLCHAIN_FILE:-}" ]]; then extra+=("-DCMAKE_TOOLCHAIN_FILE=$CMAKE_TOOLCHAIN_FILE"); fi
cmake -S "$HERE" -B "$BUILD/cmake" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
  -DONNXRUNTIME_ROOT="$BUILD/ort" -DCMAKE_INSTALL_PREFIX="$BUILD/install" ${extra[@]+"${extra[@]}"} >"$BUILD/cmake-configure.log" \
  || { cat "$BUILD/cmake-configure.log" >&2; exit 1; }
grep -E "^-- fcam_localizer" "$BUILD/cmake-configure.log" || true
cmake --build "$BUILD/cmake" -j "${JOBS:-2}"
cmake --install "$BUILD/cmake" >/dev/null
echo "build.sh: installed to $BUILD/install (bin/fcam_localize, lib/cmake/fcam_localizer)"
