"""aarch64, the CPU of every Jetson: the native CPU code cross-compiled with Debian's g++-aarch64-linux-gnu and run
under qemu-user (export/cpp/cross/aarch64.sh, `make aarch64`).

What runs under emulation here: the launcher test binary (golden cases + 300 cases from the NumPy reference); the
CPU launcher of cam_postprocess through a file front end (tests/cpp/cross/postprocess_dump.cpp), whose every output
byte must equal the x86-64 build's and the Python core's; the installed aarch64 library through the downstream
consumer built for aarch64 (decoding + Pillow resize, byte-equal to x86-64); and fcam_localize on the aarch64 ONNX
Runtime from its PyPI wheel: bit-identical to x86-64 on an exact-arithmetic graph, and within 1e-4 with the same
classes, masks and boxes on an exported F-CAM network.

Skips with the reason when the cross toolchain, qemu-user or the arm64 libpng/libjpeg are absent; FCAM_REQUIRE_AARCH64=1
turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "export" / "cpp" / "cross" / "aarch64.sh"
TOOLCHAIN = REPO / "export" / "cpp" / "cmake" / "aarch64-linux-gnu.cmake"
BUILD = Path(os.environ.get("FCAM_AARCH64_BUILD", REPO / "export" / "cpp" / "build-aarch64"))


def _unavailable(reason: str) -> None:
    if os.environ.get("FCAM_REQUIRE_AARCH64") == "1":
        pytest.fail(f"aarch64 leg required (FCAM_REQUIRE_AARCH64=1) but {reason}")
    pytest.skip(reason)


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in ("aarch64-linux-gnu-g++", "qemu-aarch64", "cmake") if shutil.which(tool) is None]
    missing += [
        f"arm64 {lib}"
        for lib in ("libpng16.so", "libjpeg.so", "libstdc++.so.6")
        if not Path("/usr/lib/aarch64-linux-gnu", lib).exists()
    ]
    return missing


def _qemu_env() -> dict[str, str]:
    return {
        **os.environ,
        "QEMU_LD_PREFIX": str(BUILD / "qemu-sysroot"),
        "QEMU_CPU": "cortex-a76",
    }


def _write_launcher_cases(path: Path, seed: int, n_cases: int) -> None:
    """The launcher test binary's FCAMCASE file (kernels/tests/test_launcher.cpp), outputs from the NumPy reference."""
    from fcam_deploy.ops import cam_postprocess_reference

    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(b"FCAMCASE" + struct.pack("<q", n_cases))
        for c in range(n_cases):
            n, h, w = (
                int(rng.integers(1, 4)),
                int(rng.integers(1, 12)),
                int(rng.integers(1, 12)),
            )
            oh, ow, k = (
                int(rng.integers(1, 40)),
                int(rng.integers(1, 40)),
                int(rng.integers(1, 5)),
            )
            q, p, norm = bool(c & 1), bool(c & 2), c % 5 != 0
            tau = float(rng.choice([0.0, 1.0, rng.random()]))
            m = rng.standard_normal((n, h, w)).astype(np.float32)
            if not norm:
                m = np.abs(m) / 3  # the runtime's case: a map already in [0, 1] (clamped)
            r = cam_postprocess_reference(m, oh, ow, tau, q, p, k, norm)
            f.write(
                struct.pack(
                    "<6qdq",
                    n,
                    h,
                    w,
                    oh,
                    ow,
                    k,
                    tau,
                    int(q) | int(p) << 1 | int(norm) << 2,
                )
            )
            for a in (m, r.full, r.mask, r.boxes, r.count):
                f.write(np.ascontiguousarray(a).tobytes())


@pytest.fixture(scope="module")
def aarch64_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run export/cpp/cross/aarch64.sh (kernels + library + app for aarch64, launcher test under qemu)."""
    missing = _missing_prerequisites()
    if missing:
        _unavailable(
            f"cross toolchain incomplete: {', '.join(missing)} (apt-get install g++-aarch64-linux-gnu "
            "qemu-user libpng-dev:arm64 libjpeg-dev:arm64 libstdc++6:arm64 after dpkg --add-architecture arm64)"
        )
    import sys

    cases = tmp_path_factory.mktemp("aarch64") / "cases.bin"
    _write_launcher_cases(cases, seed=11, n_cases=300)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "FCAM_AARCH64_BUILD": str(BUILD),
        "FCAM_LAUNCHER_CASES": str(cases),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=1200,
    )
    if proc.returncode == 3:
        _unavailable(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return {"stdout": proc.stdout, "install": BUILD / "cpp" / "install", "cases": cases}


def test_launcher_test_binary_under_qemu(aarch64_build: dict[str, Any]) -> None:
    out = aarch64_build["stdout"]
    assert "fcam_launcher_test: 300 file cases" in out and "fcam_launcher_test: all checks passed" in out, out
    assert "ARM aarch64" in out  # the app that was built is an aarch64 executable


def _cmake_build(src: Path, build: Path, *args: str) -> None:
    cfg = subprocess.run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            *args,
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = subprocess.run(
        ["cmake", "--build", str(build), "-j", "2"],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert bld.returncode == 0, bld.stdout + bld.stderr


def _postprocess_input(path: Path, seed: int) -> tuple[np.ndarray, list[tuple[int, int]], float, int]:
    """Maps of the runtime's kind (in [0, 1], normalize off), with ties and plateaus, to sizes up and down."""
    rng = np.random.default_rng(seed)
    n, h, w, k, tau = 12, 12, 16, 6, 0.4
    maps = rng.random((n, h, w)).astype(np.float32)
    maps[1] = np.round(maps[1] * 4) / 4  # plateaus: many ties at the threshold and in the max
    maps[2] = 0.0  # all zero: no component
    maps[3] = np.where(rng.random((h, w)) < 0.3, 1.0, 0.0)  # scattered pixels, many components
    maps[4] = rng.random((h, w)) * 1.5 - 0.25  # values outside [0, 1]: clamped
    sizes = [
        (375, 500),
        (h, w),
        (1, 1),
        (97, 31),
        (5, 300),
        (224, 224),
        (480, 640),
        (13, 17),
        (1, 200),
        (200, 1),
        (333, 90),
        (64, 48),
    ]
    with path.open("wb") as f:
        f.write(b"FCAMPPD1" + struct.pack("<6qd", n, h, w, k, 2, 0, tau))
        f.write(np.asarray(sizes, np.int64).tobytes())
        f.write(maps.tobytes())
    return maps, sizes, tau, k


def test_postprocess_bit_identical_on_aarch64(aarch64_build: dict[str, Any], tmp_path: Path) -> None:
    """The launcher built for aarch64 (run under qemu) writes the same bytes as the x86-64 build, and those are the
    Python core's (fcam_deploy._native_cpu) — the post-processing of the runtime and of the C++ library."""
    from fcam_deploy.ops.cpu import native_cpu_available, postprocess_to_sizes

    src = Path(__file__).parent / "cross"
    _cmake_build(src, tmp_path / "x86")
    _cmake_build(src, tmp_path / "arm", f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}")
    inp = tmp_path / "in.bin"
    maps, sizes, tau, k = _postprocess_input(inp, seed=5)
    x86 = subprocess.run(
        [
            str(tmp_path / "x86" / "postprocess_dump"),
            str(inp),
            str(tmp_path / "x86.bin"),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert x86.returncode == 0, x86.stderr
    arm = subprocess.run(
        [
            "qemu-aarch64",
            str(tmp_path / "arm" / "postprocess_dump"),
            str(inp),
            str(tmp_path / "arm.bin"),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        env=_qemu_env(),
    )
    assert arm.returncode == 0, arm.stderr
    a, b = (tmp_path / "x86.bin").read_bytes(), (tmp_path / "arm.bin").read_bytes()
    assert len(a) == len(b) == sum(h * w * 5 for h, w in sizes) + len(sizes) * (k * 4 + 1) * 4
    assert a == b, f"{sum(x != y for x, y in zip(a, b, strict=True))} bytes differ"
    ok, why = native_cpu_available()
    if not ok:
        pytest.skip(f"x86-64 == aarch64 checked; the comparison with the Python core needs it: {why}")
    ref = postprocess_to_sizes(maps, sizes, tau, max_boxes=k, normalize=False, threads=2)
    expect = b"".join(
        f.astype(np.float32).tobytes() + m.astype(np.uint8).tobytes() for f, m in zip(ref.fulls, ref.masks, strict=True)
    )
    expect += ref.boxes.astype(np.int32).tobytes() + ref.count.astype(np.int32).tobytes()
    assert a == expect
    assert int((ref.count > 0).sum()) >= 9 and int(ref.count.max()) == k  # not vacuous: boxes found, K reached


def test_decode_and_resize_bit_identical_on_aarch64(
    aarch64_build: dict[str, Any], images: list[Path], consumer: Path, tmp_path: Path
) -> None:
    """The installed aarch64 library, used by the downstream consumer project built for aarch64 through
    find_package: PNG/JPEG decoding and the Pillow resize give the x86-64 bytes under qemu."""
    arm = tmp_path / "consumer-arm"
    _cmake_build(
        Path(__file__).parent / "consumer",
        arm,
        f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
        f"-DCMAKE_PREFIX_PATH={aarch64_build['install']}",
    )
    named = {p.name: p for p in images}
    cases = [
        (named["rgb4_200x130.png"], 64, 64),
        (named["photo.jpg"], 96, 96),
        (named["gray.jpg"], 33, 47),
        (named["rgb7_333x90.png"], 32, 32),
        (named["mode_P.png"], 300, 17),
    ]
    for i, (path, w, h) in enumerate(cases):
        outs = []
        for exe, prefix in (
            (consumer / "resize_check", []),
            (arm / "resize_check", ["qemu-aarch64"]),
        ):
            out = tmp_path / f"{i}_{len(prefix)}.rgb"
            proc = subprocess.run(
                [*prefix, str(exe), str(path), str(w), str(h), str(out)],
                capture_output=True,
                check=False,
                text=True,
                timeout=300,
                env=_qemu_env(),
            )
            assert proc.returncode == 0, proc.stderr
            outs.append(out.read_bytes())
        assert len(outs[0]) == w * h * 3 and outs[0] == outs[1], path.name


def _run_localize_compare(mode: str, model: Path, images: list[Path]) -> str:
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "FCAM_AARCH64_BUILD": str(BUILD)}
    proc = subprocess.run(
        ["bash", str(SCRIPT), f"--{mode}", str(model), *map(str, images)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_localize_bit_identical_on_aarch64(
    aarch64_build: dict[str, Any], install_dir: Path, images: list[Path], tmp_path: Path
) -> None:
    """fcam_localize on the aarch64 ONNX Runtime (under qemu) == on x86-64 for a graph whose arithmetic is exact on
    any CPU (export/cpp/cross/demo_model.py exact_arith.onnx): every JSON line (logits, score, boxes) and every map
    and mask byte — decoding, resize, engine plumbing, post-processing and softmax included."""
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT.parent / "demo_model.py"),
            str(tmp_path),
            "--no-demo",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = _run_localize_compare("exact", tmp_path / "exact_arith.onnx", images)
    n = len(images)
    assert f"[compare] exact: {n} image(s): lines_identical {n}, maps_identical {n}, masks_identical {n}" in out, out


def test_exported_fcam_close_on_aarch64(
    aarch64_build: dict[str, Any],
    install_dir: Path,
    images: list[Path],
    exported_fcam: Any,
) -> None:
    """An exported F-CAM network (ResNet18-s8 trunk): ONNX Runtime's convolutions sum in another order on NEON than
    on AVX, so logits and maps agree to ~1e-5 rather than bit for bit; classes, masks away from the threshold and
    boxes must still agree (export/cpp/cross/compare_runs.py --close)."""
    sel = images[:8]
    out = _run_localize_compare("close", exported_fcam("onnx"), sel)
    assert f"[compare] close: {len(sel)} image(s)" in out and f"classes_equal {len(sel)}" in out, out
