"""The C++ launcher test binary (built with ASan + UBSan): golden cases, then cases from the reference."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np

from fcam_deploy.ops import cam_postprocess_reference, launcher_test_path
from tests._support.native import needs_native

BIN = launcher_test_path()
pytestmark = needs_native(BIN is not None, "fcam_launcher_test not built (run `make kernels`; needs cmake)")


def _write_cases(path: Path, seed: int, n_cases: int) -> None:
    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(b"FCAMCASE" + struct.pack("<q", n_cases))
        for c in range(n_cases):
            n, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
            oh, ow, k = int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 5))
            q, p, norm = bool(c & 1), bool(c & 2), bool(c & 4) or c % 7 != 0
            tau = float(rng.choice([0.0, 1.0, rng.random(), np.arange(0, 1, 0.01)[rng.integers(100)]]))
            m = rng.standard_normal((n, h, w)).astype(np.float32)
            if c % 11 == 0:
                m[0] = 2.0  # constant map
            if c % 13 == 0:
                m[-1, 0, 0] = np.nan
            if c % 9 == 4:  # F-CAM-like probabilities with -0.0 where torch.relu(-0.0) leaves it
                norm = False
                m = np.where(m > 0, m / (1 + m), np.float32(-0.0)).astype(np.float32)
            r = cam_postprocess_reference(m, oh, ow, tau, q, p, k, norm)
            f.write(struct.pack("<6qdq", n, h, w, oh, ow, k, tau, int(q) | int(p) << 1 | int(norm) << 2))
            for a in (m, r.full, r.mask, r.boxes, r.count):
                f.write(np.ascontiguousarray(a).tobytes())


def test_launcher_binary_golden_and_reference_cases(tmp_path: Path) -> None:
    cases = tmp_path / "cases.bin"
    _write_cases(cases, seed=7, n_cases=300)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    proc = subprocess.run([str(BIN), str(cases)], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "300 file cases" in proc.stdout and "all checks passed" in proc.stdout


def test_launcher_binary_rejects_a_corrupt_case_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOTACASE")
    proc = subprocess.run([str(BIN), str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "not an FCAMCASE file" in proc.stderr
