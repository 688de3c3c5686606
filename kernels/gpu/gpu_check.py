"""The GPU legs in one command: build, exact CUDA-vs-CPU checks, sanitizers, timings, F-CAM end to end.

    bash kernels/gpu/run_all.sh [OUTDIR]                 # on a GPU machine (issue 14); OUTDIR = benchmarks/results/gpu
    python kernels/gpu/gpu_check.py --device cpu --small --out DIR   # CPU-only mode (CI: tests/ops/test_gpu_check.py)

Needs on the GPU machine: torch with CUDA, nvcc, cmake, ninja (no TensorRT, no onnxruntime-gpu, nothing
downloaded). Optional: scipy + opencv (the NumPy reference; without them only CUDA vs the C++ CPU launcher is
compared), torchvision / timm (ResNet50 / EfficientNet-Lite0 end to end), compute-sanitizer.

The script is a list of checks (:data:`CHECKS`); each runs in its own subprocess with a time box, so a crash, a
sticky CUDA error or a hang in one check is recorded and the others still run; each records its elapsed time and
status (pass / fail / skip with the reason / error / timeout). A global time limit (default 480 s, well inside the
15-minute GPU lease including the build and the machine's start) skips what no longer fits. Results: ``OUTDIR/gpu_check.json`` and
``OUTDIR/gpu_check.md``; exit status 0 only when no check failed, errored or timed out.

Checks (CUDA mode; CPU mode runs ``postprocess-exact`` with the CPU launcher against the NumPy reference on the
same hard inputs and records every GPU check as skipped):

* ``build-torch-ext``: the torch extension against this machine's torch, CUDA for the local GPU's arch only;
* ``build-launcher-test``: CMake build of ``fcam_cuda_launcher_test`` (CUDA launcher vs CPU launcher, no torch);
* ``postprocess-exact``: CUDA op vs C++ CPU op vs NumPy reference on the hard inputs of :func:`hard_cases`
  (checkerboard, serpentine, sparse pixels with K >= 16, 1x2048x2048, N above the SM count, -0.0, NaN, h or w = 1,
  random shapes): bit-identical ``full``, exact mask / boxes / count;
* ``postprocess-stream-determinism``: the op on a non-default stream and twice on the default one, bitwise;
* ``cuda-launcher-test``: ``fcam_cuda_launcher_test`` (uint8 and int32 masks, non-default stream, two runs);
* ``sanitizer-memcheck`` / ``-racecheck`` / ``-synccheck``: compute-sanitizer on ``fcam_cuda_launcher_test --small``;
* ``postprocess-timing``: CUDA op vs the same map steps in torch ops, 28->224 and 224->375x500 (N = 64), and
  the op's traffic as a fraction of measured device-to-device copy bandwidth;
* ``postprocess-hard-input-timing``: the op on 256..2048 checkerboard, serpentine and sparse-pixel maps (K = 1
  and 16) against a smooth map, sizing the known performance limits (kernels/README.md §2);
* ``fcam-e2e-cuda-graphs``: F-CAM (ResNet50-WSOL, EfficientNet-Lite0) at 224, eager vs one CUDA-graph replay,
  batch 1 and 32, next to the paper's F-CAM vs gradient-CAM cost (fcam-method.md, runtime table);
* ``lattice-filter-cuda-vs-cpu``: ``fcam_deploy.train.crf.lattice_filter`` on CUDA vs CPU, when that function exists
  and accepts CUDA tensors (skipped with the reason otherwise).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_VERSION = 1
#: Paper: per-image inference time, ResNet50 column (docs/method.md §3 "Runtime": the slides, slide 15; hardware not stated).
PAPER_MS_PER_IMAGE = {"F-CAM (ours + STDCL), ResNet50": 18.5, "mean of six gradient CAMs, ResNet50": 37.4}
STATUSES = ("pass", "fail", "skip", "error", "timeout")


# ----------------------------------------------------------------------------------------------------------------
# Check list, context, results


@dataclass
class Context:
    """What every check sees. ``device`` is ``cuda`` or ``cpu``; ``small`` shrinks the inputs (CI, sanitizers)."""

    device: str
    small: bool
    out: Path
    work: Path
    deadline: float = float("inf")
    partial_path: Path | None = None

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def save_partial(self, data: dict[str, Any]) -> None:
        """Record what a long check has measured so far: if its time box kills it, the report keeps this."""
        if self.partial_path is not None:
            self.partial_path.write_text(json.dumps(data, default=str))


@dataclass
class Check:
    """One entry of the check list: ``fn(ctx)`` returns its data dict (``ok`` decides pass/fail, ``summary`` is the
    report line) or raises :class:`Skip`; ``cuda`` checks are skipped in CPU mode; ``budget_s`` is its time box."""

    name: str
    phase: str
    fn: Callable[[Context], dict[str, Any]]
    budget_s: float
    cuda: bool = True


@dataclass
class CheckResult:
    name: str
    phase: str
    status: str
    seconds: float
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check whose prerequisite is missing; the message is the recorded reason."""


def _require_cuda() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA device visible to torch")
    return torch


def _require_native(cuda: bool) -> Any:
    import torch

    from fcam_deploy.ops import native_status

    st = native_status()
    if not st.available:
        raise Skip(f"torch extension not usable: {st.reason}")
    if cuda and not st.cuda:
        raise Skip("the torch extension has no CUDA kernel (build-torch-ext did not build one)")
    return torch.ops.fcam.cam_postprocess


def _reference_status(protocol: bool) -> str | None:
    """``None`` when the NumPy reference can run (scipy; cv2 for protocol boxes), else why not."""
    import importlib.util

    missing = [m for m in ("scipy",) + (("cv2",) if protocol else ()) if importlib.util.find_spec(m) is None]
    return f"NumPy reference needs {', '.join(missing)} (not installed)" if missing else None


# ----------------------------------------------------------------------------------------------------------------
# Hard inputs (shared by CPU and CUDA mode)


@dataclass
class HardCase:
    """Maps ``(N, h, w)`` float32, output size, and the option combinations ``(quantize, protocol, normalize, K,
    tau)`` to run; ``reference`` False where the NumPy reference would be too slow (protocol mode on thousands of
    components: it traces each component's contour on the whole image)."""

    name: str
    maps: np.ndarray
    out_h: int
    out_w: int
    combos: list[tuple[bool, bool, bool, int, float]]
    reference: bool = True


def binary_pattern(kind: str, size: int) -> np.ndarray:
    """0/1 float32 ``(size, size)`` patterns: ``checkerboard`` (one 8-connected component), ``serpentine`` (one
    1-pixel-wide path through the whole image: the longest union-find chains), ``sparse`` (isolated pixels on a
    3-pixel grid: many components of equal size, so the top K are decided by the tie rule)."""
    y, x = np.mgrid[0:size, 0:size]
    if kind == "checkerboard":
        m = (x + y) % 2 == 0
    elif kind == "serpentine":
        turn = np.where((y // 4) % 2 == 0, size - 1, 0)
        m = (y % 4 == 0) | ((y % 4 != 0) & (x == turn))
    elif kind == "sparse":
        m = (x % 3 == 1) & (y % 3 == 1)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return m.astype(np.float32)


def _smooth(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """CAM-like maps: a few Gaussian blobs plus noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((n, h, w), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * max(h, w)
            out[i] += np.float32(rng.uniform(0.3, 1.0)) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out[i] += rng.normal(0, 0.05, (h, w)).astype(np.float32)
    return out


def hard_cases(small: bool, sm_count: int, seed: int = 0) -> list[HardCase]:
    """The inputs of issue 11's verification list. ``small`` (CI, CPU mode) shrinks the big ones."""
    rng = np.random.default_rng(seed)
    s = 48 if small else 256
    big_in, big_out = (16, 256) if small else (64, 2048)
    std = [(False, False, True, 16, 0.5), (True, True, True, 16, 0.5)]
    cases = [
        HardCase(f"checkerboard {s}x{s} identity", binary_pattern("checkerboard", s)[None], s, s, std),
        HardCase(f"serpentine {s}x{s} identity", binary_pattern("serpentine", s)[None], s, s, std),
        HardCase(
            f"sparse pixels {s}x{s} identity, K=16 ties",
            binary_pattern("sparse", s)[None],
            s,
            s,
            [(False, False, True, 16, 0.5), (True, False, True, 20, 0.5)],
        ),
        HardCase(
            f"sparse pixels {s}x{s} protocol, K=16 ties",
            binary_pattern("sparse", s)[None],
            s,
            s,
            [(True, True, True, 16, 0.5)],
            reference=small,
        ),
        HardCase(
            "sparse pixels 24x24 protocol, K=16 ties",
            binary_pattern("sparse", 24)[None],
            24,
            24,
            [(True, True, True, 16, 0.5), (False, True, True, 64, 0.3)],
        ),
        HardCase(
            f"1x{big_out}x{big_out} from {big_in}x{big_in}",
            _smooth(rng, 1, big_in, big_in),
            big_out,
            big_out,
            [(False, False, True, 8, 0.5), (True, True, True, 8, 0.5), (False, False, False, 4, 0.2)],
        ),
    ]
    n_big = sm_count + 7
    cases.append(
        HardCase(
            f"N={n_big} (> {sm_count} SMs) 14x14->56x56",
            _smooth(rng, n_big, 14, 14),
            56,
            56,
            [(False, False, True, 4, 0.5), (True, True, True, 4, 0.35)],
        )
    )
    x = rng.standard_normal((3, 9, 11)).astype(np.float32)
    negzero = np.where(x > 0, x / (1 + x), np.float32(-0.0)).astype(np.float32)
    cases.append(
        HardCase(
            "-0.0 in pass-through maps (torch.relu(-0.0))",
            negzero,
            23,
            29,
            [(q, p, False, 4, t) for q in (False, True) for p in (False, True) for t in (0.0, 0.5)],
        )
    )
    nan = _smooth(rng, 3, 8, 8)
    nan[1, 3, 4] = np.nan
    nan[2, 0, 0] = np.inf
    cases.append(
        HardCase(
            "NaN / inf maps (zeros)",
            nan,
            16,
            16,
            [(q, p, n, 3, 0.5) for q in (False, True) for p in (False, True) for n in (True, False)],
        )
    )
    for shape, out in (((2, 1, 13), (5, 7)), ((2, 13, 1), (1, 9)), ((2, 1, 1), (1, 1)), ((2, 6, 1), (6, 1))):
        cases.append(
            HardCase(
                f"h or w = 1: {shape[1]}x{shape[2]}->{out[0]}x{out[1]}",
                rng.standard_normal(shape).astype(np.float32),
                out[0],
                out[1],
                [(q, p, n, 2, 0.45) for q in (False, True) for p in (False, True) for n in (True, False)],
            )
        )
    for shape, out in (((4, 28, 28), (224, 224)), ((3, 7, 9), (3, 2)), ((2, 14, 14), (375, 500))):
        if small and out[0] * out[1] > 60_000:
            out = (out[0] // 2, out[1] // 2)
        cases.append(
            HardCase(
                f"random {shape[1]}x{shape[2]}->{out[0]}x{out[1]}",
                _smooth(rng, *shape),
                *out,
                [(q, p, n, 5, 0.5) for q in (False, True) for p in (False, True) for n in (True, False)],
            )
        )
    return cases


def _first_difference(name: str, a: np.ndarray, b: np.ndarray) -> str:
    idx = np.argwhere(a != b)
    return f"{name}: {len(idx)} element(s) differ, first at {tuple(int(i) for i in idx[0])}" if len(idx) else ""


def compare_outputs(got: tuple[Any, ...], want: tuple[Any, ...]) -> str:
    """'' when ``full`` is bit-identical and mask / boxes / count are equal, else what differs first."""
    g = [np.asarray(t.cpu().numpy() if hasattr(t, "cpu") else t) for t in got]
    w = [np.asarray(t.cpu().numpy() if hasattr(t, "cpu") else t) for t in want]
    for name, a, b in zip(("full", "mask", "boxes", "count"), g, w, strict=True):
        if a.shape != b.shape:
            return f"{name}: shape {a.shape} vs {b.shape}"
        if name == "full":
            a, b = a.astype(np.float32).view(np.uint32), b.astype(np.float32).view(np.uint32)
        else:
            a, b = a.astype(np.int64), b.astype(np.int64)
        diff = _first_difference(name, a, b)
        if diff:
            return diff
    return ""


# ----------------------------------------------------------------------------------------------------------------
# Checks


def check_postprocess_exact(ctx: Context) -> dict[str, Any]:
    """CUDA op (or, in CPU mode, the CPU op) against the C++ CPU op and the NumPy reference on :func:`hard_cases`."""
    import torch

    from fcam_deploy.ops import cam_postprocess_reference

    cuda = ctx.device == "cuda"
    if cuda:
        _require_cuda()
    op = _require_native(cuda)
    sm = torch.cuda.get_device_properties(0).multi_processor_count if cuda else 16
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    ref_skips: set[str] = set()
    n_cmp = 0
    for case in hard_cases(ctx.small, sm):
        if ctx.time_left() < 5:
            failures.append(f"{case.name}: not run (time box)")
            continue
        maps = torch.from_numpy(np.ascontiguousarray(case.maps))
        row: dict[str, Any] = {
            "case": case.name,
            "shape": list(case.maps.shape),
            "out": [case.out_h, case.out_w],
            "runs": 0,
            "vs_cpu": 0,
            "vs_reference": 0,
            "mismatches": 0,
        }
        for q, p, norm, k, tau in case.combos:
            args = (case.out_h, case.out_w, tau, q, p, k, norm)
            cpu = op(maps, *args)
            tag = f"{case.name} q={int(q)} p={int(p)} norm={int(norm)} K={k} tau={tau}"
            if cuda:
                dev = tuple(t.cpu() for t in op(maps.cuda(), *args))
                torch.cuda.synchronize()
                diff = compare_outputs(dev, cpu)
                row["vs_cpu"] += 1
                n_cmp += 1
                if diff:
                    failures.append(f"{tag} [CUDA vs CPU launcher] {diff}")
                    row["mismatches"] += 1
            else:
                dev = cpu
            why = _reference_status(p)
            if why is not None:
                ref_skips.add(why)
            elif case.reference:
                ref = cam_postprocess_reference(case.maps, case.out_h, case.out_w, tau, q, p, k, norm)
                diff = compare_outputs(dev, tuple(ref))
                row["vs_reference"] += 1
                n_cmp += 1
                if diff:
                    failures.append(f"{tag} [{'CUDA' if cuda else 'CPU launcher'} vs NumPy reference] {diff}")
                    row["mismatches"] += 1
            row["runs"] += 1
        rows.append(row)
        ctx.save_partial({"cases": rows, "failures": failures[:50]})
    what = "CUDA op vs CPU launcher and NumPy reference" if cuda else "CPU launcher vs NumPy reference (CPU mode)"
    return {
        "ok": not failures and n_cmp > 0,
        "summary": f"{what}: {n_cmp} exact comparisons over {len(rows)} hard inputs, {len(failures)} mismatch(es)"
        + (f"; reference not run: {'; '.join(sorted(ref_skips))}" if ref_skips else ""),
        "cases": rows,
        "failures": failures[:50],
        "reference_skipped": sorted(ref_skips),
    }


def check_stream_determinism(ctx: Context) -> dict[str, Any]:
    """The op on a non-default stream equals the default-stream result; two default-stream runs are identical."""
    torch = _require_cuda()
    op = _require_native(True)
    failures: list[str] = []
    n = 0
    for case in hard_cases(ctx.small, torch.cuda.get_device_properties(0).multi_processor_count, seed=1):
        maps = torch.from_numpy(np.ascontiguousarray(case.maps)).cuda()
        for q, p, norm, k, tau in case.combos[:2]:
            args = (case.out_h, case.out_w, tau, q, p, k, norm)
            a = tuple(t.clone() for t in op(maps, *args))
            b = tuple(t.clone() for t in op(maps, *args))
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                c = tuple(t.clone() for t in op(maps, *args))
            side.synchronize()
            torch.cuda.synchronize()
            for label, other in (("run 2 vs run 1", b), ("non-default stream vs default", c)):
                diff = compare_outputs(other, a)
                n += 1
                if diff:
                    failures.append(f"{case.name} q={int(q)} p={int(p)} [{label}] {diff}")
    return {
        "ok": not failures,
        "summary": f"{n} bitwise comparisons (two runs; a non-default stream), {len(failures)} difference(s)",
        "failures": failures[:50],
    }


def _launcher_test_binary(ctx: Context) -> Path:
    path = ctx.work / "cmake" / "fcam_cuda_launcher_test"
    if not path.is_file():
        raise Skip(f"{path} not built (build-launcher-test did not run or failed)")
    return path


def _run_logged(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    return proc.returncode, (proc.stdout + proc.stderr)[-6000:], time.monotonic() - t0


def _local_arch() -> str:
    torch = _require_cuda()
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}{minor}"


def _cuda_home() -> str:
    home = os.environ.get("FCAM_CUDA_HOME") or os.environ.get("CUDA_HOME")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return home
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise Skip("no nvcc on PATH and neither FCAM_CUDA_HOME nor CUDA_HOME set")
    return str(Path(nvcc).resolve().parents[1])


def check_build_torch_ext(ctx: Context) -> dict[str, Any]:
    """kernels/torch/build_ext.py with CUDA for the local architecture, against this machine's torch."""
    arch = _local_arch()
    env = dict(
        os.environ, FCAM_TORCH_CUDA="1", FCAM_CUDA_ARCHS=arch, CUDA_HOME=_cuda_home(), MAX_JOBS=str(os.cpu_count() or 4)
    )
    rc, log, secs = _run_logged(
        [sys.executable, str(ROOT / "kernels" / "torch" / "build_ext.py")], max(ctx.time_left(), 1), env
    )
    return {
        "ok": rc == 0,
        "summary": f"torch extension with CUDA for sm_{arch}: exit {rc} in {secs:.0f} s",
        "arch": arch,
        "log_tail": log[-3000:],
    }


def check_build_launcher_test(ctx: Context) -> dict[str, Any]:
    """CMake build (local arch) of fcam_cuda_launcher_test in the work folder."""
    arch = _local_arch()
    if shutil.which("cmake") is None:
        raise Skip("cmake not found")
    build = ctx.work / "cmake"
    nvcc = str(Path(_cuda_home()) / "bin" / "nvcc")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    t0 = time.monotonic()
    rc, log, _ = _run_logged(
        [
            "cmake",
            "-S",
            str(ROOT / "kernels"),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_CUDA_COMPILER={nvcc}",
            f"-DFCAM_CUDA_ARCHS={arch}",
        ],
        max(ctx.time_left(), 1),
    )
    if rc == 0:
        rc, log2, _ = _run_logged(
            ["cmake", "--build", str(build), "--target", "fcam_cuda_launcher_test", "-j", str(os.cpu_count() or 4)],
            max(ctx.time_left(), 1),
        )
        log += log2
    secs = time.monotonic() - t0
    return {
        "ok": rc == 0 and (build / "fcam_cuda_launcher_test").is_file(),
        "summary": f"fcam_cuda_launcher_test for sm_{arch}: exit {rc} in {secs:.0f} s",
        "log_tail": log[-3000:],
    }


def check_cuda_launcher_test(ctx: Context) -> dict[str, Any]:
    """fcam_cuda_launcher_test (full size): CUDA launcher vs CPU launcher, both mask types, a non-default stream."""
    _require_cuda()
    binary = _launcher_test_binary(ctx)
    rc, log, secs = _run_logged([str(binary)], max(ctx.time_left(), 1))
    last = log.strip().splitlines()[-1] if log.strip() else ""
    return {"ok": rc == 0, "summary": f"exit {rc} in {secs:.1f} s: {last}", "log_tail": log}


def _sanitizer() -> str:
    """compute-sanitizer from PATH, FCAM_CUDA_HOME, CUDA_HOME, the nvcc's toolkit or /usr/local/cuda."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    homes = [os.environ.get("FCAM_CUDA_HOME"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(str(Path(nvcc).resolve().parents[1]))
    for home in filter(None, homes):
        for cand in (Path(home) / "bin" / "compute-sanitizer", Path(home) / "compute-sanitizer" / "compute-sanitizer"):
            if cand.exists():
                return str(cand)
    raise Skip("compute-sanitizer not found (not part of this CUDA install)")


def _sanitizer_check(tool: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        _require_cuda()
        san = _sanitizer()
        binary = _launcher_test_binary(ctx)
        cmd = [san, "--tool", tool, "--error-exitcode", "97", str(binary), "--small"]
        rc, log, secs = _run_logged(cmd, max(ctx.time_left(), 1))
        errors = [ln for ln in log.splitlines() if "ERROR SUMMARY" in ln or "RACECHECK SUMMARY" in ln]
        return {
            "ok": rc == 0,
            "summary": f"{tool}: exit {rc} in {secs:.1f} s; {' '.join(errors) or 'no summary'}",
            "log_tail": log[-3000:],
        }

    run.__doc__ = f"compute-sanitizer --tool {tool} on fcam_cuda_launcher_test --small"
    return run


def _cuda_time(fn: Callable[[], Any], iters: int = 30) -> float:
    """Median seconds of ``fn`` measured with CUDA events after a warm-up."""
    import torch

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def _copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device ``copy_`` of 1 GiB: bytes read + written per second."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * nbytes / _cuda_time(lambda: dst.copy_(src), iters=10)


def check_postprocess_timing(ctx: Context) -> dict[str, Any]:
    """CUDA op vs torch-ops map steps, and the op's unavoidable traffic as a fraction of copy bandwidth."""
    torch = _require_cuda()
    import torch.nn.functional as F

    op = _require_native(True)
    copy_bw = _copy_bandwidth()
    rows = []
    for name, h, w, oh, ow in (("28x28 -> 224x224", 28, 28, 224, 224), ("224x224 -> 375x500", 224, 224, 375, 500)):
        n = 64
        maps = torch.randn(n, h, w, device="cuda")

        def torch_ops(maps: Any = maps, oh: int = oh, ow: int = ow) -> Any:
            lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
            norm = torch.where(hi > lo, (maps - lo) / (hi - lo), torch.zeros_like(maps))
            full = F.interpolate(norm[:, None], (oh, ow), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
            return full, (full > 0.5 * full.amax((1, 2), keepdim=True)).to(torch.uint8)

        t_op = _cuda_time(functools.partial(op, maps, oh, ow, 0.5, False, False, 4, True))
        t_proto = _cuda_time(functools.partial(op, maps, oh, ow, 0.5, True, True, 4, True))
        t_torch = _cuda_time(torch_ops)
        moved = n * h * w * 4 + n * oh * ow * (4 + 1)  # maps in, full + mask out
        rows.append(
            {
                "case": f"N={n}, {name}",
                "op_ms": t_op * 1e3,
                "op_protocol_ms": t_proto * 1e3,
                "torch_ops_ms": t_torch * 1e3,
                "op_vs_torch_ops": t_torch / t_op,
                "op_effective_GBps": moved / t_op / 1e9,
                "pct_of_copy_bw": 100 * moved / t_op / copy_bw,
            }
        )
    return {
        "ok": True,
        "copy_GBps": copy_bw / 1e9,
        "rows": rows,
        "summary": "; ".join(
            f"{r['case']}: op {r['op_ms']:.3f} ms vs torch ops {r['torch_ops_ms']:.3f} ms, "
            f"{r['pct_of_copy_bw']:.0f}% of copy bandwidth"
            for r in rows
        ),
        "note": "torch ops = the same map steps (min-max, bilinear, threshold) without components or boxes",
    }


def _time_once(fn: Callable[[], Any]) -> float:
    """Seconds of one call (CUDA events), after one untimed call."""
    import torch

    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / 1e3


def check_hard_input_timing(ctx: Context) -> dict[str, Any]:
    """The op on identity-resized 0/1 maps that stress the labelling, against a smooth map of the same size.

    Sizes the review's performance findings (kernels/README.md §2): union-find chains as long as a one-pixel line
    (serpentine: without path compression while merging, finds can walk O(path length)), and K rounds of a
    one-block arg-max over all components (sparse pixels, K = 16 vs 1). Sizes grow 256 -> 1024 -> 2048 and a size
    is skipped when the previous one already took over a second per call (the serpentine's cost can grow with the
    square of the path length); partial results survive the time box.
    """
    torch = _require_cuda()
    op = _require_native(True)
    rows: list[dict[str, Any]] = []
    slow: set[str] = set()
    for size in (256, 1024, 2048):
        smooth = torch.from_numpy(_smooth(np.random.default_rng(3), 1, 64, 64)).cuda()
        base = _time_once(functools.partial(op, smooth, size, size, 0.5, False, False, 1, True))
        for kind in ("checkerboard", "serpentine", "sparse"):
            for k in (1, 16):
                name = f"{kind} {size}x{size}, K={k}"
                if kind in slow or ctx.time_left() < 20:
                    rows.append(
                        {
                            "case": name,
                            "op_ms": None,
                            "vs_smooth_map": None,
                            "note": "not timed: the smaller size took > 1 s per call"
                            if kind in slow
                            else "not timed: time box",
                        }
                    )
                    continue
                m = torch.from_numpy(binary_pattern(kind, size)[None]).cuda()
                t = _time_once(functools.partial(op, m, size, size, 0.5, False, False, k, True))
                rows.append({"case": name, "op_ms": t * 1e3, "vs_smooth_map": t / base, "smooth_ms": base * 1e3})
                if t > 1.0:
                    slow.add(kind)
                ctx.save_partial({"ok": False, "rows": rows, "summary": "partial (time box)"})
    worst = max((r for r in rows if r["op_ms"] is not None), key=lambda r: r["vs_smooth_map"], default=None)
    summary = (
        f"{len(rows)} inputs; slowest relative to a smooth map: {worst['case']} {worst['op_ms']:.2f} ms "
        f"({worst['vs_smooth_map']:.1f}x)"
        if worst
        else "nothing timed"
    )
    return {"ok": True, "rows": rows, "summary": summary + (f"; > 1 s per call: {sorted(slow)}" if slow else "")}


def _graph_vs_eager(arch: str, batch: int, size: int) -> dict[str, Any]:
    import torch

    from fcam_deploy.bench.latency import measure_latency
    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.models import FCAM, build_classifier

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = FCAM(build_classifier(arch, 200)).eval().to(dev)  # random weights: the cost does not depend on them
    graph = LocalizationGraph(model, "fcam", "none", (size, size), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.5)
    graph = graph.to(dev).eval()
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=dev)
    sync = torch.cuda.synchronize
    with torch.inference_mode():
        eager_out = graph(x)
        eager = measure_latency(lambda: graph(x), batch=batch, warmup=5, iters=20, sync=sync)
        static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN autotuning, allocator)
            for _ in range(3):
                graph(static_x)
        torch.cuda.current_stream().wait_stream(side)
        cg = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cg):
            static_out = graph(static_x)
        replay = measure_latency(cg.replay, batch=batch, warmup=5, iters=20, sync=sync)
        cg.replay()
        sync()
        diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(eager_out, static_out, strict=True))
    return {
        "arch": arch,
        "batch": batch,
        "size": size,
        "eager_p50_ms": eager.p50,
        "graph_p50_ms": replay.p50,
        "eager_ms_per_image": eager.p50 / batch,
        "graph_ms_per_image": replay.p50 / batch,
        "speedup": eager.p50 / replay.p50,
        "max_abs_diff_vs_eager": diff,
    }


def check_fcam_e2e(ctx: Context) -> dict[str, Any]:
    """F-CAM end to end (uint8 images in -> logits, class, map), eager vs CUDA graph, batch 1 and 32."""
    _require_cuda()
    import importlib.util

    rows, skipped = [], []
    for arch, module in (("resnet50", "torchvision"), ("efficientnet_lite0", "timm")):
        if importlib.util.find_spec(module) is None:
            skipped.append(f"{arch}: {module} not installed")
            continue
        for batch in (1, 32):
            if ctx.time_left() < 15:
                skipped.append(f"{arch} batch {batch}: time box")
                continue
            rows.append(_graph_vs_eager(arch, batch, 224))
    if not rows:
        raise Skip("; ".join(skipped) or "nothing to run")
    ok = all(r["max_abs_diff_vs_eager"] <= 1e-4 for r in rows)
    summ = "; ".join(
        f"{r['arch']} b{r['batch']}: eager {r['eager_ms_per_image']:.2f} / graph "
        f"{r['graph_ms_per_image']:.2f} ms per image"
        for r in rows
    )
    return {
        "ok": ok,
        "rows": rows,
        "skipped": skipped,
        "paper_ms_per_image": PAPER_MS_PER_IMAGE,
        "summary": summ + (f"; not run: {'; '.join(skipped)}" if skipped else ""),
    }


def check_lattice_filter(ctx: Context) -> dict[str, Any]:
    """fcam_deploy.train.crf.lattice_filter on CUDA tensors vs on CPU tensors (same inputs)."""
    torch = _require_cuda()
    try:
        from fcam_deploy.train import crf
    except ImportError as exc:
        raise Skip(f"fcam_deploy.train.crf does not import: {exc}") from exc
    fn = getattr(crf, "lattice_filter", None)
    if fn is None:
        raise Skip("fcam_deploy.train.crf.lattice_filter does not exist on this branch")
    g = torch.Generator().manual_seed(0)
    n, c, h, w = (2, 4, 48, 40) if ctx.small else (2, 4, 224, 224)
    images = torch.rand(n, 3, h, w, generator=g) * 255
    values = torch.softmax(torch.randn(n, c, h, w, generator=g), dim=1)
    rows: list[dict[str, Any]] = []
    for sigma_rgb, sigma_xy in ((13.0, 80.0), (5.0, 3.0)):
        cpu = fn(images, values, sigma_rgb, sigma_xy)
        try:
            gpu = fn(images.cuda(), values.cuda(), sigma_rgb, sigma_xy)
        except (RuntimeError, TypeError, NotImplementedError, ValueError) as exc:
            raise Skip(f"lattice_filter does not accept CUDA tensors: {type(exc).__name__}: {exc}") from exc
        if not (hasattr(gpu, "is_cuda") and gpu.is_cuda):
            raise Skip("lattice_filter returned a CPU tensor for CUDA inputs (no CUDA kernel)")
        gpu_c = gpu.cpu()
        scale = float(cpu.abs().max()) or 1.0
        rows.append(
            {
                "sigma_rgb": sigma_rgb,
                "sigma_xy": sigma_xy,
                "shape": list(cpu.shape),
                "bit_identical": bool(torch.equal(gpu_c, cpu)),
                "max_abs_diff": float((gpu_c - cpu).abs().max()),
                "max_rel_diff": float((gpu_c - cpu).abs().max()) / scale,
            }
        )
    ok = all(r["max_rel_diff"] <= 1e-4 for r in rows)  # float atomics may reorder sums; 1e-4 of the output scale
    return {
        "ok": ok,
        "rows": rows,
        "tolerance": "max |CUDA - CPU| <= 1e-4 * max |CPU| (bit-identity recorded)",
        "summary": "; ".join(
            f"sigma_rgb {r['sigma_rgb']}, sigma_xy {r['sigma_xy']}: max abs diff "
            f"{r['max_abs_diff']:.2e}, bit-identical {r['bit_identical']}"
            for r in rows
        ),
    }


#: The check list, in run order (most important first: the global time limit skips from the end).
CHECKS: list[Check] = [
    Check("build-torch-ext", "build", check_build_torch_ext, 300),
    Check("build-launcher-test", "build", check_build_launcher_test, 180),
    Check("postprocess-exact", "correctness", check_postprocess_exact, 150, cuda=False),
    Check("cuda-launcher-test", "correctness", check_cuda_launcher_test, 90),
    Check("postprocess-stream-determinism", "correctness", check_stream_determinism, 60),
    Check("sanitizer-memcheck", "sanitizer", _sanitizer_check("memcheck"), 120),
    Check("postprocess-timing", "timing", check_postprocess_timing, 90),
    Check("fcam-e2e-cuda-graphs", "timing", check_fcam_e2e, 150),
    Check("postprocess-hard-input-timing", "timing", check_hard_input_timing, 75),
    Check("lattice-filter-cuda-vs-cpu", "correctness", check_lattice_filter, 90),
    Check("sanitizer-racecheck", "sanitizer", _sanitizer_check("racecheck"), 120),
    Check("sanitizer-synccheck", "sanitizer", _sanitizer_check("synccheck"), 90),
]

#: Builds that run concurrently at the start (each is still time-boxed and recorded on its own).
PARALLEL_BUILDS = ("build-torch-ext", "build-launcher-test")


# ----------------------------------------------------------------------------------------------------------------
# Running


def run_check_inline(check: Check, ctx: Context) -> CheckResult:
    """Run one check in this process (the child side of :func:`run_checks`, and the tests)."""
    t0 = time.monotonic()
    if check.cuda and ctx.device != "cuda":
        return CheckResult(check.name, check.phase, "skip", 0.0, "CPU mode (--device cpu): needs a CUDA GPU")
    try:
        data = check.fn(ctx)
    except Skip as exc:
        return CheckResult(check.name, check.phase, "skip", time.monotonic() - t0, str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded in the report, and the other checks still run
        import traceback

        return CheckResult(
            check.name,
            check.phase,
            "error",
            time.monotonic() - t0,
            f"{type(exc).__name__}: {exc}",
            {"traceback": traceback.format_exc()[-4000:]},
        )
    status = "pass" if data.get("ok") else "fail"
    return CheckResult(
        check.name,
        check.phase,
        status,
        time.monotonic() - t0,
        "" if data.get("ok") else str(data.get("summary", "")),
        data,
    )


def _child_cmd(check: Check, ctx: Context, result: Path, budget: float) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        check.name,
        "--device",
        ctx.device,
        "--work",
        str(ctx.work),
        "--out",
        str(ctx.out),
        "--result",
        str(result),
        "--time-limit",
        f"{budget:.1f}",
    ]
    return cmd + (["--small"] if ctx.small else [])


def _child_env() -> dict[str, str]:
    """The children import fcam_deploy from this checkout (a process environment, not a sys.path edit)."""
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + path if path else ""))


def _collect_child(check: Check, proc: subprocess.Popen[str], result: Path, t0: float, budget: float) -> CheckResult:
    try:
        out, _ = proc.communicate(timeout=max(budget - (time.monotonic() - t0), 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        partial = result.with_name(result.name + ".partial")
        data: dict[str, Any] = json.loads(partial.read_text()) if partial.is_file() else {}
        data.pop("ok", None)
        data["summary"] = f"time box of {budget:.0f} s exceeded" + ("; partial results kept" if data else "")
        data["output_tail"] = (out or "")[-3000:]
        return CheckResult(
            check.name, check.phase, "timeout", time.monotonic() - t0, f"time box of {budget:.0f} s exceeded", data
        )
    if result.is_file():
        res = CheckResult(**json.loads(result.read_text()))
        res.seconds = time.monotonic() - t0  # wall time including the child's start
        return res
    return CheckResult(
        check.name,
        check.phase,
        "error",
        time.monotonic() - t0,
        f"the check's process exited with {proc.returncode} without a result (crash?)",
        {"output_tail": (out or "")[-3000:]},
    )


def run_checks(
    checks: list[Check],
    ctx: Context,
    isolate: bool = True,
    budget_scale: float = 1.0,
    log: Callable[[str], None] = print,
) -> list[CheckResult]:
    """Run ``checks`` (each in a subprocess when ``isolate``), time-boxed, never stopping at a failure."""
    results: dict[str, CheckResult] = {}
    pending = list(checks)
    with tempfile.TemporaryDirectory(prefix="fcam-gpu-check-") as tmp:

        def start(check: Check) -> tuple[subprocess.Popen[str], Path, float, float]:
            result = Path(tmp) / f"{check.name}.json"
            budget = min(check.budget_s * budget_scale, max(ctx.time_left(), 0.1))
            proc = subprocess.Popen(
                _child_cmd(check, ctx, result, budget),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
                env=_child_env(),
            )
            return proc, result, time.monotonic(), budget

        if isolate and ctx.device == "cuda":
            builds = [c for c in pending if c.name in PARALLEL_BUILDS]
            running = {c.name: (c, *start(c)) for c in builds}
            for name, (c, proc, result, t0, budget) in running.items():
                results[name] = _collect_child(c, proc, result, t0, budget)
                log(_line(results[name]))
            pending = [c for c in pending if c.name not in running]
        for check in pending:
            if ctx.time_left() < 10:
                results[check.name] = CheckResult(
                    check.name, check.phase, "skip", 0.0, "global time limit reached before this check"
                )
            elif not isolate or (check.cuda and ctx.device != "cuda"):
                results[check.name] = run_check_inline(check, ctx)
            else:
                proc, result, t0, budget = start(check)
                results[check.name] = _collect_child(check, proc, result, t0, budget)
            log(_line(results[check.name]))
    return [results[c.name] for c in checks]


def _line(r: CheckResult) -> str:
    summary = r.data.get("summary") or r.reason
    return f"[gpu-check] {r.status.upper():7s} {r.name} ({r.seconds:.1f} s): {summary}"


# ----------------------------------------------------------------------------------------------------------------
# Report


def environment() -> dict[str, Any]:
    """Versions and devices (never raises: a missing piece is recorded as such)."""
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": sys.platform, "cpu_count": os.cpu_count()}
    try:
        import torch

        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env["gpu"] = {
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "sms": p.multi_processor_count,
                "memory_gib": round(p.total_memory / 2**30, 1),
            }
    except Exception as exc:  # noqa: BLE001 - recorded in the report
        env["torch_error"] = f"{type(exc).__name__}: {exc}"
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        env["nvidia_smi"] = proc.stdout.strip() or proc.stderr.strip()
    nvcc = shutil.which("nvcc")
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False, timeout=30).stdout
        env["nvcc"] = next((ln.strip() for ln in out.splitlines() if "release" in ln), "?")
    return env


def write_report(
    results: list[CheckResult], out: Path, *, mode: str, env: dict[str, Any], total_s: float, time_limit_s: float
) -> tuple[Path, Path]:
    """Write ``gpu_check.json`` and ``gpu_check.md`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    ok = all(r.status in ("pass", "skip") for r in results)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        "ok": ok,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "total_s": round(total_s, 1),
        "time_limit_s": time_limit_s,
        "environment": env,
        "counts": {s: sum(r.status == s for r in results) for s in STATUSES},
        "checks": [asdict(r) for r in results],
    }
    jpath, mpath = out / "gpu_check.json", out / "gpu_check.md"
    jpath.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    gpu = env.get("gpu", {})
    lines = [
        "# GPU check (`bash kernels/gpu/run_all.sh`)",
        "",
        (
            f"Mode **{mode}**, {'**all checks passed or skipped**' if ok else '**FAILURES**'}; "
            f"{total_s:.0f} s in total (limit {time_limit_s:.0f} s). GPU: {gpu.get('name', 'none')} "
            f"(sm_{gpu.get('capability', '?').replace('.', '')}, {gpu.get('sms', '?')} SMs); torch {env.get('torch')} "
            f"(CUDA {env.get('torch_cuda')}); {env.get('nvcc', 'no nvcc')}; driver: {env.get('nvidia_smi', '?')}."
        ),
        "",
        "| check | phase | status | time (s) | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        summary = str(r.data.get("summary") or r.reason).replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.name} | {r.phase} | {r.status} | {r.seconds:.1f} | {summary} |")
    by = {r.name: r for r in results}
    exact = by.get("postprocess-exact")
    if exact and exact.data.get("cases"):
        lines += [
            "",
            "## Exact comparisons (bit-identical `full`, equal mask / boxes / count)",
            "",
            "| input | maps | out | option sets | vs CPU launcher | vs NumPy reference | mismatches |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in exact.data["cases"]:
            lines.append(
                f"| {c['case']} | {'x'.join(map(str, c['shape']))} | {c['out'][0]}x{c['out'][1]} | "
                f"{c['runs']} | {c['vs_cpu']} | {c['vs_reference']} | {c['mismatches']} |"
            )
        for f in exact.data.get("failures", [])[:10]:
            lines.append(f"- {f}")
    timing = by.get("postprocess-timing")
    if timing and timing.data.get("rows"):
        lines += [
            "",
            f"## CUDA post-process vs torch ops (copy bandwidth {timing.data['copy_GBps']:.0f} GB/s)",
            "",
            "| case | op ms | op + protocol ms | torch ops ms | speed-up | % of copy bandwidth |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for t in timing.data["rows"]:
            lines.append(
                f"| {t['case']} | {t['op_ms']:.3f} | {t['op_protocol_ms']:.3f} | {t['torch_ops_ms']:.3f} | "
                f"{t['op_vs_torch_ops']:.2f}x | {t['pct_of_copy_bw']:.0f}% |"
            )
        lines.append(f"\n{timing.data.get('note', '')}")
    hard = by.get("postprocess-hard-input-timing")
    if hard and hard.data.get("rows"):
        lines += [
            "",
            "## Hard inputs, identity resize (one call each; vs a smooth 64x64 map upsampled to the same size)",
            "",
            "| input | op ms | vs smooth map |",
            "| --- | --- | --- |",
        ]
        for r in hard.data["rows"]:
            if r.get("op_ms") is None:
                lines.append(f"| {r['case']} | - | {r.get('note', '')} |")
            else:
                lines.append(f"| {r['case']} | {r['op_ms']:.3f} | {r['vs_smooth_map']:.1f}x |")
    e2e = by.get("fcam-e2e-cuda-graphs")
    lines += ["", "## F-CAM end to end, eager vs CUDA graph (224x224, random weights)", ""]
    if e2e and e2e.data.get("rows"):
        lines += [
            "| backbone | batch | eager ms / image | CUDA graph ms / image | speed-up | max abs diff |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for e in e2e.data["rows"]:
            lines.append(
                f"| {e['arch']} | {e['batch']} | {e['eager_ms_per_image']:.3f} | "
                f"{e['graph_ms_per_image']:.3f} | {e['speedup']:.2f}x | {e['max_abs_diff_vs_eager']:.1e} |"
            )
    else:
        lines.append(f"Not measured: {(e2e.reason if e2e else 'not run') or 'no rows'}.")
    lines += [
        "",
        "Paper, per image (docs/method.md §3 runtime table, ResNet50 column; hardware not stated): "
        + "; ".join(f"{k} {v} ms" for k, v in PAPER_MS_PER_IMAGE.items())
        + ".",
    ]
    for r in results:
        if r.status in ("fail", "error", "timeout"):
            tail = r.data.get("traceback") or r.data.get("log_tail") or r.data.get("output_tail") or ""
            lines += ["", f"## {r.name}: {r.status}", "", r.reason, "", "```", str(tail)[-1500:], "```"]
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


# ----------------------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--small", action="store_true", help="small inputs (CI)")
    ap.add_argument("--work", type=Path, default=ROOT / "kernels" / "build-gpu", help="build folder (gitignored)")
    ap.add_argument("--time-limit", type=float, default=480.0, help="global limit in seconds (default 480)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these checks (names as in the report)")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every check's time box")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ctx = Context(args.device, args.small, args.out, args.work)
    by_name = {c.name: c for c in CHECKS}
    if args.child:  # one check, in its own process; it stops adding work a few seconds before its time box ends
        ctx.deadline = time.monotonic() + max(args.time_limit - 5.0, 1.0)
        ctx.partial_path = args.result.with_name(args.result.name + ".partial")
        res = run_check_inline(by_name[args.child], ctx)
        args.result.write_text(json.dumps(asdict(res), default=str))
        return 0
    unknown = sorted(set(args.only or []) - set(by_name))
    if unknown:
        ap.error(f"unknown check(s) {unknown}; choose from {sorted(by_name)}")
    checks = [c for c in CHECKS if args.only is None or c.name in args.only]
    env = environment()
    if args.device == "cuda" and not env.get("cuda_available"):
        why = env.get("torch_error") or "torch.cuda.is_available() is False"
        print(
            f"[gpu-check] no CUDA device visible to torch ({why}); this command needs an NVIDIA GPU "
            "(--device cpu runs the CPU-only mode)",
            file=sys.stderr,
        )
        return 2
    t0 = time.monotonic()
    ctx.deadline = t0 + args.time_limit
    ctx.work.mkdir(parents=True, exist_ok=True)
    print(
        f"[gpu-check] mode {args.device}, {len(checks)} check(s), limit {args.time_limit:.0f} s; "
        f"GPU {env.get('gpu', {}).get('name', 'none')}",
        flush=True,
    )
    results = run_checks(checks, ctx, isolate=True, budget_scale=args.budget_scale, log=lambda s: print(s, flush=True))
    jpath, mpath = write_report(
        results, args.out, mode=args.device, env=env, total_s=time.monotonic() - t0, time_limit_s=args.time_limit
    )
    bad = [r.name for r in results if r.status in ("fail", "error", "timeout")]
    print(
        f"[gpu-check] {len(results) - len(bad)}/{len(results)} passed or skipped; wrote {jpath} and {mpath}"
        + (f"; FAILED: {', '.join(bad)}" if bad else ""),
        flush=True,
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
