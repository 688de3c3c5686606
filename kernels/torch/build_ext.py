"""Builds the torch extension ``fcam_deploy/_C.so`` in place with ``torch.utils.cpp_extension`` (ninja).

Called by ``kernels/build.sh``. CUDA sources are included when ``FCAM_TORCH_CUDA=1``, or with
``FCAM_TORCH_CUDA=auto`` (the default) when torch is a CUDA build and ``CUDA_HOME`` points at a toolkit with nvcc
(no GPU needed); otherwise the extension is CPU-only (the CUDA sources are still compile-checked by the CMake
build). Prints one line saying which. CUDA architectures: ``FCAM_CUDA_ARCHS`` (CMake ``CUDA_ARCHITECTURES``
syntax: ``80-real`` = SASS only, ``120`` = SASS + PTX), else the default list of the toolkit's CUDA major version
in ``kernels/cuda_archs.txt`` (:func:`default_cuda_archs`, :func:`gencode_flags`). FCAM_TORCH_EXT_BUILD_DIR moves
the build folder; FCAM_TORCH_EXT_NO_INSTALL=1 builds without copying the result into fcam_deploy/ (compile check,
timing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: The one list of default CUDA architectures (also read by kernels/CMakeLists.txt and kernels/build.sh).
ARCHS_FILE = Path(__file__).resolve().parents[1] / "cuda_archs.txt"


def default_cuda_archs(cuda_major: int, path: Path = ARCHS_FILE) -> list[str]:
    """Default architectures (CMake syntax) for a CUDA toolkit major version, from ``kernels/cuda_archs.txt``.

    Raises:
        ValueError: the file has no ``cuda<major>:`` line.
    """
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == f"cuda{cuda_major}":
            return [a.strip() for a in value.split(";") if a.strip()]
    raise ValueError(f"{path}: no default CUDA architectures for CUDA {cuda_major} (add a 'cuda{cuda_major}:' line)")


def gencode_flags(archs: list[str]) -> list[str]:
    """nvcc ``-gencode`` flags for CMake-style architectures: ``NN-real`` -> SASS sm_NN; ``NN-virtual`` -> PTX
    compute_NN; ``NN`` -> both (SASS for sm_NN and PTX that newer GPUs JIT-compile).

    Raises:
        ValueError: an entry is not ``<digits>[a|f][-real|-virtual]``.
    """
    flags: list[str] = []
    for a in archs:
        m = re.fullmatch(r"(\d+[af]?)(-real|-virtual)?", a.strip())
        if m is None:
            raise ValueError(f"CUDA architecture {a!r}: expected e.g. 80-real, 90 or 120-virtual")
        num, kind = m.group(1), m.group(2) or ""
        if kind != "-virtual":
            flags += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
        if kind != "-real":
            flags += ["-gencode", f"arch=compute_{num},code=compute_{num}"]
    return flags


def toolkit_cuda_major(cuda_home: str) -> int:
    """Major version of the CUDA toolkit at ``cuda_home`` (``nvcc --version``)."""
    out = subprocess.run(
        [str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"release (\d+)\.", out)
    if m is None:
        raise ValueError(f"cannot read the CUDA version from `nvcc --version`: {out.strip()[-200:]}")
    return int(m.group(1))


def main() -> int:
    import torch
    from torch.utils import cpp_extension

    kernels = Path(__file__).resolve().parents[1]
    root = kernels.parent
    build_dir = Path(os.environ.get("FCAM_TORCH_EXT_BUILD_DIR", kernels / "build" / "torch_ext"))
    build_dir.mkdir(parents=True, exist_ok=True)
    cuda_home = os.environ.get("CUDA_HOME", "")
    mode = os.environ.get("FCAM_TORCH_CUDA", "auto")
    have_toolkit = bool(cuda_home) and (Path(cuda_home) / "bin" / "nvcc").exists()
    if mode == "1":
        with_cuda = True
    elif mode == "0":
        with_cuda = False
    else:
        # A GPU is not needed to build or load it (the CUDA kernel is registered, calls need a device).
        with_cuda = have_toolkit and torch.version.cuda is not None
    reason = (
        "CUDA kernels included"
        if with_cuda
        else f"SKIP its CUDA kernels, CPU only (FCAM_TORCH_CUDA={mode}, toolkit={'yes' if have_toolkit else 'no'}, "
        f"torch CUDA build={torch.version.cuda is not None})"
    )
    print(f"[kernels] torch extension: {reason}", flush=True)
    sources = [
        kernels / "torch" / "ops.cpp",
        kernels / "src" / "cpu" / "cam_postprocess_cpu.cpp",
        kernels / "torch" / "lattice_ops.cpp",
        kernels / "src" / "cpu" / "lattice_filter_cpu.cpp",
    ]
    cflags = ["-O3", "-ffp-contract=off", "-fno-fast-math"]  # torch 2.14 headers need its own -std=c++20
    cuda_flags: list[str] = []
    if with_cuda:
        sources += [
            kernels / "torch" / "cuda_impl.cpp",
            kernels / "src" / "cuda" / "cam_postprocess.cu",
            kernels / "torch" / "lattice_cuda_impl.cpp",
            kernels / "src" / "cuda" / "lattice_filter.cu",
        ]
        env_archs = os.environ.get("FCAM_CUDA_ARCHS", "")
        archs = [a for a in env_archs.split(";") if a] or default_cuda_archs(toolkit_cuda_major(cuda_home))
        print(f"[kernels] torch extension CUDA architectures: {';'.join(archs)}", flush=True)
        cuda_flags += gencode_flags(archs)
        cuda_flags += ["-O2", "-fmad=false"]
        # cpp_extension reads CUDA_HOME at import; the caller sets it to the toolkit root.
    lib = cpp_extension.load(
        name="_C",
        sources=[str(s) for s in sources],
        extra_include_paths=[str(kernels / "include"), str(kernels / "torch")],
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_flags,
        build_directory=str(build_dir),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=False,
    )
    del lib
    if os.environ.get("FCAM_TORCH_EXT_NO_INSTALL") == "1":  # compile check / timing only
        print(f"[kernels] torch extension built in {build_dir} (not installed)", flush=True)
        return 0
    built = build_dir / "_C.so"
    target = root / "fcam_deploy" / "_C.so"
    tmp = target.with_name("_C.tmp.so")  # matches the *.so ignore rule
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)  # atomic: a running process keeps its mapped copy
    print(f"[kernels] torch extension -> {target.relative_to(root)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
