"""Environment manifest recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["environment_manifest"]


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_manifest() -> dict[str, Any]:
    """CPU/GPU, driver, library versions and thread counts of this process."""
    import torch

    gpus: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(
                {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}"}
            )
    ort_providers: list[str] | None = None
    if _pkg("onnxruntime") or _pkg("onnxruntime-gpu"):
        import onnxruntime

        ort_providers = list(onnxruntime.get_available_providers())
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": gpus,
        "driver": _pkg("nvidia-driver") if gpus else None,
        "torchvision": _pkg("torchvision"),
        "onnx": _pkg("onnx"),
        "onnxruntime": _pkg("onnxruntime") or _pkg("onnxruntime-gpu"),
        "onnxruntime_providers": ort_providers,
        "tensorrt": _pkg("tensorrt") or _pkg("tensorrt-cu13") or _pkg("tensorrt-cu12"),
        "fcam_deploy": _pkg("fcam-deploy"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
