"""Builds the torch extension ``fcam_deploy/_C.so`` in place with ``torch.utils.cpp_extension`` (ninja).

Called by ``kernels/build.sh``. CUDA sources are included when ``FCAM_TORCH_CUDA=1``, or with
``FCAM_TORCH_CUDA=auto`` (the default) when torch is a CUDA build, ``CUDA_HOME`` points at a toolkit with nvcc
and a GPU is visible; otherwise the extension is CPU-only (the CUDA sources are still compile-checked by
the CMake build). Prints one line saying which.
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
    build_dir = kernels / "build" / "torch_ext"
    build_dir.mkdir(parents=True, exist_ok=True)
    cuda_home = os.environ.get("CUDA_HOME", "")
    mode = os.environ.get("FCAM_TORCH_CUDA", "auto")
    have_toolkit = bool(cuda_home) and (Path(cuda_home) / "bin" / "nvcc").exists()
    if mode == "1":
        with_cuda = True
    elif mode == "0":
        with_cuda = False
    else:
        with_cuda = have_toolkit and torch.version.cuda is not None and torch.cuda.is_available()
    reason = (
        "CUDA kernels included"
        if with_cuda
        else f"CPU only (FCAM_TORCH_CUDA={mode}, toolkit={'yes' if have_toolkit else 'no'}, "
        f"torch CUDA build={torch.version.cuda is not None}, GPU visible={torch.cuda.is_available()})"
    )
    print(f"[kernels] torch extension: {reason}", flush=True)
    sources = [
        kernels / "torch" / "ops.cpp",
        kernels / "src" / "cpu" / "cam_postprocess_cpu.cpp",
    ]
    cflags = ["-O3", "-ffp-contract=off", "-fno-fast-math"]  # torch 2.14 headers need its own -std=c++20
    cuda_flags: list[str] = []
    if with_cuda:
        sources += [kernels / "torch" / "cuda_impl.cpp", kernels / "src" / "cuda" / "cam_postprocess.cu"]
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
    built = build_dir / "_C.so"
    target = root / "fcam_deploy" / "_C.so"
    tmp = target.with_suffix(".so.tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)  # atomic: a running process keeps its mapped copy
    print(f"[kernels] torch extension -> {target.relative_to(root)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
