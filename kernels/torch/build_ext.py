"""Builds the torch extension ``fcam_deploy/_C.so`` in place with ``torch.utils.cpp_extension`` (ninja).

Called by ``kernels/build.sh``. CUDA sources are included when ``FCAM_TORCH_CUDA=1``, or with
``FCAM_TORCH_CUDA=auto`` (the default) when torch is a CUDA build and ``CUDA_HOME`` points at a toolkit with nvcc
(no GPU needed: ~140 s more on 2 cores for 5 archs, within the 8-minute budget); otherwise the extension is CPU-only (the CUDA sources are still compile-checked by
the CMake build). Prints one line saying which. FCAM_TORCH_EXT_BUILD_DIR moves the build folder;
FCAM_TORCH_EXT_NO_INSTALL=1 builds without copying the result into fcam_deploy/ (compile check, timing).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


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
        sources += [kernels / "torch" / "cuda_impl.cpp", kernels / "src" / "cuda" / "cam_postprocess.cu",
                    kernels / "torch" / "lattice_cuda_impl.cpp", kernels / "src" / "cuda" / "lattice_filter.cu"]
        archs = os.environ.get("FCAM_CUDA_ARCHS", "75;86;87;89;90").split(";")
        for a in filter(None, archs):
            cuda_flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
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
