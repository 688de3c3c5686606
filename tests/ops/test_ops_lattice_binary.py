"""The C++ test binary of the lattice_filter CPU launcher (built with ASan + UBSan): dense-Gaussian agreement,
adjoint identity, thread/batch invariance, linearity and typed statuses (kernels/tests/test_lattice.cpp)."""

from __future__ import annotations

import os
import subprocess

import pytest

from fcam_deploy.ops import kernels_build_dir

BIN = kernels_build_dir() / "fcam_lattice_test"
pytestmark = pytest.mark.skipif(
    not BIN.is_file(), reason="fcam_lattice_test not built (run `make kernels`; needs cmake)"
)


def test_lattice_launcher_binary() -> None:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    proc = subprocess.run([str(BIN)], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all lattice checks passed" in proc.stdout
    assert proc.stdout.count("dense Gaussian") == 3
