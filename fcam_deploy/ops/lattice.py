"""The native permutohedral-lattice bilateral filter ``torch.ops.fcam.lattice_filter`` (kernels/README.md,
"lattice_filter"): the filter of F-CAM's dense CRF loss, as the official code computes it.

This module is the thin, checked call into the op (no autograd); the differentiable entry point and the CRF loss
are in :mod:`fcam_deploy.train.crf`. There is no pure-Python fallback: a lattice in Python would take minutes per
batch, so a missing build is a :class:`~fcam_deploy.errors.BackendUnavailableError` naming ``make kernels``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import BackendUnavailableError, InputError
from . import names
from ._native import native_status

__all__ = ["LatticeStatus", "lattice_filter_op", "lattice_status"]

_QUALNAME = f"{names.TORCH_NAMESPACE}::{names.TORCH_LATTICE_OP}"


class LatticeStatus(NamedTuple):
    """Whether ``torch.ops.fcam.lattice_filter`` is usable (and with a CUDA kernel), and why not."""

    available: bool
    cuda: bool
    reason: str


def lattice_status() -> LatticeStatus:
    """Loads the extension if needed (cached by :func:`fcam_deploy.ops.native_status`) and looks for the op."""
    st = native_status()
    if not st.available:
        return LatticeStatus(False, False, st.reason)
    ns = getattr(torch.ops, names.TORCH_NAMESPACE)
    if not hasattr(ns, names.TORCH_LATTICE_OP):
        return LatticeStatus(
            False, False, "the built fcam_deploy/_C.so predates the lattice filter (rebuild it with `make kernels`)"
        )
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(_QUALNAME, "CUDA")
    return LatticeStatus(True, bool(has_cuda), st.reason)


def lattice_filter_op(
    images: torch.Tensor, values: torch.Tensor, sigma_rgb: float, sigma_xy: float, adjoint: bool = False
) -> torch.Tensor:
    """``out = W values`` (or ``W^T values`` with ``adjoint``) with the lattice bilateral kernel of ``images``.

    Args:
        images: (N, 3, H, W) float32 RGB, finite (the CRF uses raw [0, 255] values), on the CPU or a CUDA device.
        values: (N, C, H, W) float32 on the same device.
        sigma_rgb, sigma_xy: bandwidths (> 0) in image-value units and pixels.
        adjoint: apply the transpose (the gradient of ``out`` with respect to ``values``).

    Returns:
        (N, C, H, W) float32 contiguous tensor on the inputs' device. CUDA tensors run the CUDA kernel when the
        extension has one; otherwise they are filtered on the CPU and copied back.

    Raises:
        InputError: wrong shapes/dtypes/devices, non-finite images, bad sigmas, or features whose lattice
            coordinates leave the packed range (sigmas far too small for the images' value range).
        BackendUnavailableError: the native extension is not built (fix: ``make kernels``).
    """
    if not isinstance(images, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise InputError("lattice_filter: images and values must be torch tensors")
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"lattice_filter: images must be (N, 3, H, W), got {tuple(images.shape)}")
    if values.dim() != 4:
        raise InputError(f"lattice_filter: values must be (N, C, H, W), got {tuple(values.shape)}")
    if images.shape[0] != values.shape[0] or images.shape[2:] != values.shape[2:]:
        raise InputError(
            f"lattice_filter: images {tuple(images.shape)} and values {tuple(values.shape)} differ in "
            "N, H or W (fix: give the RGB image with the same geometry as the maps)"
        )
    if values.shape[1] < 1:
        raise InputError("lattice_filter: values need at least one channel")
    if images.dtype != torch.float32 or values.dtype != torch.float32:
        raise InputError(f"lattice_filter: images and values must be float32, got {images.dtype} and {values.dtype}")
    if images.device != values.device:
        raise InputError(f"lattice_filter: images on {images.device}, values on {values.device}")
    for name, s in (("sigma_rgb", sigma_rgb), ("sigma_xy", sigma_xy)):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(float(s)) or float(s) <= 0:
            raise InputError(f"lattice_filter: {name} must be a finite number > 0, got {s!r}")
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise InputError("lattice_filter: images contain NaN or inf")
    st = lattice_status()
    if not st.available:
        raise BackendUnavailableError(f"lattice_filter needs the native extension: {st.reason}")
    op = getattr(getattr(torch.ops, names.TORCH_NAMESPACE), names.TORCH_LATTICE_OP)
    dev = values.device
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"lattice_filter: tensors on {dev.type} are not supported (use the CPU or CUDA)")
    on_cpu = dev.type == "cpu" or not st.cuda
    img = images if not on_cpu else images.cpu()
    val = values if not on_cpu else values.cpu()
    try:
        out = op(img.detach(), val.detach(), float(sigma_rgb), float(sigma_xy), bool(adjoint))
    except RuntimeError as exc:
        if "out of range" in str(exc):
            raise InputError(f"lattice_filter: {exc}") from exc
        raise
    return out.to(dev) if on_cpu and dev.type != "cpu" else out
