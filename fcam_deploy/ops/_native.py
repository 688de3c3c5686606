"""Loading of the native torch extension ``fcam_deploy/_C.so`` (built by ``kernels/build.sh``)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import NamedTuple

from .names import ORT_LIBRARY, TORCH_NAMESPACE, TORCH_OP, TORCH_QUALNAME, TRT_LIBRARY

__all__ = [
    "NativeStatus",
    "extension_path",
    "kernels_build_dir",
    "launcher_test_path",
    "log_fallback_once",
    "native_status",
    "ort_library_path",
    "trt_plugin_path",
]

_LOG = logging.getLogger("fcam_deploy.ops")


class NativeStatus(NamedTuple):
    """Whether ``torch.ops.fcam.cam_postprocess`` is usable, and why not."""

    available: bool
    reason: str
    cuda: bool  # the extension has a CUDA kernel


def extension_path() -> Path:
    """Path of the in-place built torch extension (it may not exist)."""
    return Path(__file__).resolve().parents[1] / "_C.so"


def kernels_build_dir() -> Path:
    """``kernels/build`` of the source tree (where ``kernels/build.sh`` puts the CMake targets)."""
    return Path(__file__).resolve().parents[2] / "kernels" / "build"


def _built(name: str) -> Path | None:
    path = kernels_build_dir() / name
    return path if path.is_file() else None


def ort_library_path() -> Path | None:
    """Path of the built ONNX Runtime custom-op library ``libfcam_ort_ops.so``, or None when not built."""
    return _built(ORT_LIBRARY)


def trt_plugin_path() -> Path | None:
    """Path of the built TensorRT plugin library ``libfcam_trt_plugins.so``, or None when not built."""
    return _built(TRT_LIBRARY)


def launcher_test_path() -> Path | None:
    """Path of the ASan+UBSan test binary of the CPU launcher, or None when not built."""
    return _built("fcam_launcher_test")


def _register_fake() -> None:
    import torch

    @torch.library.register_fake(TORCH_QUALNAME)
    def _cam_postprocess_fake(
        maps: torch.Tensor,
        out_h: int,
        out_w: int,
        tau: float,
        quantize_uint8: bool = False,
        protocol_boxes: bool = False,
        max_boxes: int = 1,
        normalize: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        torch._check(maps.dim() == 3, lambda: "fcam::cam_postprocess: maps must be (N, h, w)")
        torch._check(maps.dtype == torch.float32, lambda: "fcam::cam_postprocess: maps must be float32")
        n = maps.shape[0]
        return (
            maps.new_empty((n, out_h, out_w)),
            maps.new_empty((n, out_h, out_w), dtype=torch.uint8),
            maps.new_empty((n, max_boxes, 4), dtype=torch.int32),
            maps.new_empty((n,), dtype=torch.int32),
        )


@functools.cache
def native_status() -> NativeStatus:
    """Loads the extension once (cached) and registers the op's fake kernel for torch.export / ONNX export.

    Returns:
        :class:`NativeStatus`; never raises for a missing or broken build (the reason says what to do).
    """
    import torch

    path = extension_path()
    if not hasattr(torch.ops, TORCH_NAMESPACE) or not hasattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OP):
        if not path.exists():
            return NativeStatus(False, f"{path} is not built (run `make kernels`)", False)
        try:
            torch.ops.load_library(str(path))
        except OSError as exc:  # ABI mismatch, missing CUDA libraries, ...
            return NativeStatus(False, f"cannot load {path}: {exc} (rebuild with `make kernels`)", False)
    try:
        _register_fake()
    except RuntimeError as exc:  # already registered by another loader in this process
        if "already" not in str(exc):
            raise
    op = getattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OP).default
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA")
    return NativeStatus(True, f"loaded {path}", bool(has_cuda))


@functools.cache
def log_fallback_once(reason: str) -> None:
    """Logs (once per distinct reason) that the pure reference is used instead of the native op."""
    _LOG.warning("fcam_deploy.ops.cam_postprocess: using the NumPy reference (%s)", reason)
