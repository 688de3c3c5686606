"""Build of the compiled core ``fcam_deploy._native_cpu`` (pybind11 over the C++ CPU launcher in ``kernels/``).

Everything else about the package is declared in ``pyproject.toml``. The optional native builds (torch op, ONNX
Runtime custom-op library, CUDA, TensorRT plugin) are not part of the wheel: ``make kernels`` builds them.
"""

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# FCAM_BUILD_JOBS compiles the two translation units in parallel (default 1 here; pip's build is otherwise serial)
ParallelCompile("FCAM_BUILD_JOBS", default=0).install()

setup(
    ext_modules=[
        Pybind11Extension(
            "fcam_deploy._native_cpu",
            sources=["kernels/python/native_cpu.cpp", "kernels/src/cpu/cam_postprocess_cpu.cpp"],
            include_dirs=["kernels/include"],
            cxx_std=17,
            # the float operation order is part of the op's spec (kernels/README.md): no FMA contraction
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
        )
    ],
    cmdclass={"build_ext": build_ext},
)
