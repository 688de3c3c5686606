"""The CUDA architecture list (kernels/cuda_archs.txt) and the flags the three builds derive from it.

No GPU needed: what is checked is what nvcc would be asked to generate. Every GPU the support matrix names must get
SASS it can run (same major version, minor >= the SASS minor) and the newest architecture must carry PTX, so that
GPUs newer than the list JIT-compile instead of failing with "no kernel image is available".
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _build_ext() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fcam_build_ext", KERNELS / "torch" / "build_ext.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sass_and_ptx(flags: list[str]) -> tuple[set[int], set[int]]:
    sass = {int(m) for m in re.findall(r"code=sm_(\d+)", " ".join(flags))}
    ptx = {int(m) for m in re.findall(r"code=compute_(\d+)", " ".join(flags))}
    return sass, ptx


def _runs_on(sass: set[int], ptx: set[int], gpu: int) -> bool:
    """CUDA's compatibility rule: SASS X.y runs on X.z for z >= y; PTX compute_N is JIT-compiled for any GPU >= N."""
    return any(s // 10 == gpu // 10 and s <= gpu for s in sass) or any(p <= gpu for p in ptx)


def test_default_list_covers_the_support_matrix_with_sass_and_ptx_for_the_newest() -> None:
    b = _build_ext()
    sass, ptx = _sass_and_ptx(b.gencode_flags(b.default_cuda_archs(13)))
    assert 80 in sass, "A100 (sm_80) needs SASS"
    assert {75, 80, 86, 87, 89, 90, 100, 110, 120} <= sass
    assert ptx == {max(sass)} == {120}, "PTX for the newest architecture"
    # T4, A100, A10, Orin, L4, H100/H200, B200, B300, Thor, RTX 50xx, GB10 (DGX Spark), and a future sm_130
    for gpu in (75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121, 130):
        assert _runs_on(sass, ptx, gpu), f"no kernel image for sm_{gpu}"
    assert not _runs_on(sass, ptx, 72), "CUDA 13 cannot build Xavier; the CUDA 12 list has it"
    sass12, ptx12 = _sass_and_ptx(b.gencode_flags(b.default_cuda_archs(12)))
    assert {72, 80, 87} <= sass12 and ptx12 == {90}
    for gpu in (72, 87, 90, 100, 120):
        assert _runs_on(sass12, ptx12, gpu)


def test_gencode_flags_syntax() -> None:
    b = _build_ext()
    assert b.gencode_flags(["80-real", "90-virtual", "120"]) == [
        "-gencode",
        "arch=compute_80,code=sm_80",
        "-gencode",
        "arch=compute_90,code=compute_90",
        "-gencode",
        "arch=compute_120,code=sm_120",
        "-gencode",
        "arch=compute_120,code=compute_120",
    ]
    for bad in ("sm_80", "80-realx", ""):
        with pytest.raises(ValueError, match="CUDA architecture"):
            b.gencode_flags([bad])
    with pytest.raises(ValueError, match="no default CUDA architectures for CUDA 99"):
        b.default_cuda_archs(99)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the arch list depends on its CUDA version)")
def test_build_sh_resolves_the_same_list_for_this_toolkit() -> None:
    proc = subprocess.run(
        ["bash", str(KERNELS / "build.sh"), "--print-cuda-archs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = proc.stdout.strip().splitlines()[-1].split(";")
    b = _build_ext()
    nvcc = shutil.which("nvcc")
    assert nvcc is not None
    major = int(
        re.search(
            r"release (\d+)\.", subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
        ).group(1)
    )  # type: ignore[union-attr]
    assert printed == b.default_cuda_archs(major)  # every default arch is supported by this nvcc: none dropped
    assert "driver" in proc.stdout  # the driver requirement is stated with the list


def test_cmake_build_passes_sm80_sass_and_newest_ptx() -> None:
    """The configured kernels/build (from `make kernels`) asks nvcc for sm_80 SASS and PTX of the newest arch."""
    ninja, flags_make = KERNELS / "build" / "build.ninja", list((KERNELS / "build").glob("**/fcam_cuda.dir/flags.make"))
    text = ninja.read_text() if ninja.is_file() else "".join(f.read_text() for f in flags_make)
    if "cam_postprocess.cu" not in text and "compute_" not in text:
        pytest.skip("kernels/build has no CUDA target (no nvcc when `make kernels` ran)")
    codes = set(re.findall(r"arch=compute_(\d+),code=\[?([a-z0-9_,]+)\]?", text))
    sass = {int(a) for a, c in codes if f"sm_{a}" in c}
    ptx = {int(a) for a, c in codes if f"compute_{a}" in c}
    assert 80 in sass and ptx and max(ptx) == max(sass), (sorted(sass), sorted(ptx))
