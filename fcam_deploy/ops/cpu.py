"""``cam_postprocess`` on NumPy arrays through the compiled core ``fcam_deploy._native_cpu`` (no torch).

The core is the C++ CPU launcher of ``kernels/src/cpu`` (the same code as the torch op, the ONNX Runtime custom op
and the C++ library), built into every wheel by ``setup.py``. :func:`postprocess_to_sizes` gives each map its own
output size, which is what the runtime needs to bring a batch of model-size maps back to each image's original
resolution in one call.
"""

from __future__ import annotations

import functools
import importlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from fcam_deploy.errors import BackendUnavailableError, InputError

__all__ = ["SizedResult", "native_cpu_available", "postprocess_to_sizes"]

_MODULE = "fcam_deploy._native_cpu"
_ABI_VERSION = 1


@dataclass(frozen=True)
class SizedResult:
    """Per-map outputs of :func:`postprocess_to_sizes` (``N`` maps, map ``i`` of size ``(H_i, W_i)``).

    Attributes:
        fulls: ``N`` arrays, float32 ``(H_i, W_i)`` in [0, 1].
        masks: ``N`` arrays, bool ``(H_i, W_i)``.
        boxes: int32 ``(N, K, 4)``, ``(x0, y0, x1, y1)`` inclusive, in each map's output pixels; unused rows -1.
        count: int32 ``(N,)``, the number of valid rows of ``boxes``.
    """

    fulls: list[np.ndarray]
    masks: list[np.ndarray]
    boxes: np.ndarray
    count: np.ndarray


@functools.cache
def _load() -> ModuleType | str:
    """The compiled module, or the reason it is unusable (cached: imported once per process)."""
    try:
        mod = importlib.import_module(_MODULE)
    except ImportError as exc:
        return (
            f"the compiled core {_MODULE} is missing or does not load ({exc}); fix: reinstall fcam-deploy from a "
            "wheel or `pip install .` (it compiles the core), or in a source checkout run `make kernels`"
        )
    if getattr(mod, "ABI_VERSION", None) != _ABI_VERSION:
        return f"{_MODULE} is from another fcam-deploy version (ABI {getattr(mod, 'ABI_VERSION', None)}); rebuild it"
    return mod


def native_cpu_available() -> tuple[bool, str]:
    """``(True, path)`` when the compiled core loads, else ``(False, why and how to fix)``."""
    mod = _load()
    if isinstance(mod, str):
        return False, mod
    return True, str(getattr(mod, "__file__", _MODULE))


def postprocess_to_sizes(
    maps: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    tau: float,
    *,
    max_boxes: int = 1,
    normalize: bool = True,
    quantize_uint8: bool = False,
    protocol_boxes: bool = False,
    threads: int = 0,
) -> SizedResult:
    """Upsample each map to its own size, threshold it and box its 8-connected components (one native call).

    Same per-map semantics as :func:`fcam_deploy.ops.cam_postprocess` with ``out_h, out_w = sizes[i]``
    (kernels/README.md): min-max normalisation (or, ``normalize=False``, a clamp to [0, 1]), bilinear upsampling
    with ``align_corners=False``, mask ``full > tau * max(full)`` (or the protocol's uint8 rule), components ranked
    largest first.

    Args:
        maps: ``(N, h, w)`` float32 (other float dtypes are converted); NaN/inf rejected.
        sizes: ``N`` pairs ``(H_i, W_i)``, each >= 1 with ``H_i * W_i <= 2**30``.
        tau: relative threshold in [0, 1].
        max_boxes: ``K`` >= 1 boxes kept per map.
        normalize, quantize_uint8, protocol_boxes: as in :func:`fcam_deploy.ops.cam_postprocess`.
        threads: worker threads over maps (0 = all cores; never more than ``N`` are started).

    Raises:
        InputError: bad shapes, dtypes, sizes, NaN/inf, or out-of-range arguments.
        BackendUnavailableError: the compiled core is missing (the message says how to build it).
    """
    mod = _load()
    if isinstance(mod, str):
        raise BackendUnavailableError(mod)
    if not isinstance(maps, np.ndarray) or maps.ndim != 3 or not np.issubdtype(maps.dtype, np.floating):
        raise InputError(
            f"postprocess_to_sizes: maps must be a floating NumPy array (N, h, w), got "
            f"{type(maps).__name__} {getattr(maps, 'dtype', '')} {getattr(maps, 'shape', '')}"
        )
    if maps.shape[1] < 1 or maps.shape[2] < 1:
        raise InputError(f"postprocess_to_sizes: maps must have h, w >= 1, got {maps.shape}")
    x = np.ascontiguousarray(maps, dtype=np.float32)
    if x.size and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)).tolist()
        raise InputError(f"postprocess_to_sizes: maps {bad[:8]} contain NaN or inf (fix: np.nan_to_num the maps)")
    try:
        sz = np.asarray(sizes, dtype=np.int64).reshape(len(sizes), 2) if len(sizes) else np.zeros((0, 2), np.int64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"postprocess_to_sizes: sizes must be N pairs (H, W) of ints ({exc})") from exc
    if len(sz) != len(x):
        raise InputError(f"postprocess_to_sizes: {len(x)} maps but {len(sz)} sizes")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 <= float(tau) <= 1.0:
        raise InputError(f"postprocess_to_sizes: tau must be a float in [0, 1], got {tau!r}")
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, numbers.Integral) or not 1 <= max_boxes <= 1 << 24:
        raise InputError(f"postprocess_to_sizes: max_boxes must be an int in [1, 2**24], got {max_boxes!r}")
    try:
        fulls, masks, boxes, count = mod.postprocess(
            x,
            np.ascontiguousarray(sz),
            float(tau),
            int(max_boxes),
            bool(normalize),
            bool(quantize_uint8),
            bool(protocol_boxes),
            int(threads),
        )
    except ValueError as exc:  # the core's argument checks (sizes out of range, ...)
        raise InputError(f"postprocess_to_sizes: {exc}") from exc
    return SizedResult(list(fulls), list(masks), boxes, count)
