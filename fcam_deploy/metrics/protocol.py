"""The rules of the WSOL evaluation protocol (wsolevaluation, Choe et al. CVPR 2020) shared by both engines.

Every function here reproduces one rounding rule of the reference code exactly (see
``docs/protocol.md`` §1): the 224 frame, the float64 threshold list ``np.arange(0, 1, step)``,
the truncating uint8 cast, the ``int(t * max)`` threshold, the inclusive-pixel IoU and the int-truncating GT box
resize. Both box engines (:mod:`fcam_deploy.metrics.reference`, :mod:`fcam_deploy.metrics.fast`) and the
evaluators build on these, so a rule lives in exactly one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fcam_deploy.errors import InputError, MapError

__all__ = [
    "RESIZE_LENGTH",
    "BoxConventionError",
    "UndefinedMetricError",
    "cam_thresholds",
    "check_box_convention",
    "iou_matrix",
    "level_thresholds",
    "resize_box",
    "scoremap_to_uint8",
    "validate_scoremap",
]

#: Side of the evaluation frame: maps, GT boxes and GT masks are all compared at 224 x 224.
RESIZE_LENGTH = 224


class BoxConventionError(InputError, RuntimeError):
    """A box is not ``(x0, y0, x1, y1)`` with ``0 <= x0 <= x1`` and ``0 <= y0 <= y1``.

    Derives from ``RuntimeError`` too, like the reference's ``check_box_convention``."""


class UndefinedMetricError(InputError, RuntimeError):
    """A metric is undefined for the data given (no image accumulated, no positive GT pixel, ...).

    Derives from ``RuntimeError`` too, like the reference's PxAP errors."""


def cam_thresholds(cam_curve_interval: float) -> np.ndarray:
    """The CAM threshold list ``t_i = i * step`` for ``i = 0 .. ceil(1/step) - 1``, float64.

    Exactly ``np.arange(0, 1, cam_curve_interval)`` (what the reference uses; ``i / 100`` differs in the last bit).

    Args:
        cam_curve_interval: the step, in (0, 1).

    Returns:
        float64 array of shape (T,).
    """
    step = float(cam_curve_interval)
    if not (0.0 < step < 1.0) or not np.isfinite(step):
        raise InputError(f"cam_curve_interval must be in (0, 1), got {cam_curve_interval!r} (e.g. 0.01 or 0.001)")
    return np.arange(0, 1, step)


def validate_scoremap(scoremap: object, name: str | None = None) -> np.ndarray:
    """Check a localization map the way the reference does and return it as float64.

    Args:
        scoremap: 2-D floating array (float16/32/64), every value in [0, 1], no NaN.
        name: what to call the map in errors (a file path or an image id).

    Returns:
        The map as a C-contiguous float64 array (H, W).

    Raises:
        MapError: not an array, not 2-D, not floating point, empty, NaN or a value outside [0, 1].
    """
    what = f"score map {name}" if name else "score map"
    if not isinstance(scoremap, np.ndarray):
        raise MapError(f"{what}: expected a numpy array, got {type(scoremap).__name__}")
    if scoremap.ndim != 2:
        raise MapError(f"{what}: expected a 2-D (H, W) map, got shape {scoremap.shape}")
    if scoremap.size == 0:
        raise MapError(f"{what}: the map is empty (shape {scoremap.shape})")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise MapError(f"{what}: expected a floating-point map with values in [0, 1], got dtype {scoremap.dtype}")
    s = np.ascontiguousarray(scoremap, dtype=np.float64)
    if np.isnan(s).any():
        raise MapError(f"{what}: contains NaN (replace NaN before saving, e.g. np.nan_to_num)")
    lo, hi = float(s.min()), float(s.max())
    if lo < 0.0 or hi > 1.0:
        raise MapError(f"{what}: values must lie in [0, 1], found range [{lo:.6g}, {hi:.6g}] (min-max normalise it)")
    return s


def scoremap_to_uint8(scoremap: np.ndarray) -> np.ndarray:
    """``uint8(floor(s * 255))`` of a validated float64 map (the reference's truncating cast). Shape (H, W)."""
    return (scoremap * 255).astype(np.uint8)


def level_thresholds(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """The binarisation levels ``int(t_i * max(u8))`` of every CAM threshold, int64 (T,).

    Foreground at threshold ``t_i`` is ``u8 > level_i`` (strict, cv2 ``THRESH_BINARY``)."""
    return (np.asarray(thresholds, dtype=np.float64) * np.float64(int(max_value))).astype(np.int64)


def check_box_convention(boxes: np.ndarray | Sequence[Sequence[int]], what: str = "boxes") -> np.ndarray:
    """Validate ``(x0, y0, x1, y1)`` boxes (inclusive pixel coordinates) and return them as int64 (N, 4).

    Raises:
        BoxConventionError: a negative coordinate, ``x1 < x0`` or ``y1 < y0``, or not of shape (N, 4).
    """
    b = np.asarray(boxes)
    if b.ndim == 1:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise BoxConventionError(f"{what}: expected (N, 4) boxes (x0, y0, x1, y1), got shape {np.shape(boxes)}")
    if (
        b.size
        and not np.issubdtype(b.dtype, np.integer)
        and not np.all(np.asarray(b, dtype=np.float64) == np.floor(np.asarray(b, dtype=np.float64)))
    ):
        raise BoxConventionError(f"{what}: box coordinates must be integers, got {b.tolist()}")
    b = b.astype(np.int64)
    if (b < 0).any():
        raise BoxConventionError(f"{what}: box coordinates must be non-negative, got {b.tolist()}")
    if ((b[:, 2] - b[:, 0]) < 0).any() or ((b[:, 3] - b[:, 1]) < 0).any():
        raise BoxConventionError(f"{what}: boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {b.tolist()}")
    return b


def iou_matrix(box_a: np.ndarray | Sequence[Sequence[int]], box_b: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Pairwise IoU under the inclusive-pixel convention (the reference's ``calculate_multiple_iou``).

    ``inter = max(0, min(x1) - max(x0) + 1) * max(0, min(y1) - max(y0) + 1)``,
    ``area = (x1 - x0 + 1) * (y1 - y0 + 1)``, ``iou = inter / (area_a + area_b - inter)``; 0 where that
    denominator is <= 0.

    Args:
        box_a: (A, 4) integer boxes (x0, y0, x1, y1).
        box_b: (B, 4) integer boxes.

    Returns:
        float64 (A, B).
    """
    a = check_box_convention(box_a, "box_a")[:, None, :]
    b = check_box_convention(box_b, "box_b")[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denom = area_a + area_b - inter
    bad = denom <= 0
    denom = np.where(bad, 1, denom)
    iou = inter / denom
    iou[bad] = 0.0
    return iou


def resize_box(
    box: Sequence[int], image_size: Sequence[int], resize_size: Sequence[int] = (RESIZE_LENGTH, RESIZE_LENGTH)
) -> tuple[int, int, int, int]:
    """Map a GT box from original pixels to the evaluation frame: ``int(x * new_w / w)`` (float64, truncation).

    Args:
        box: (x0, y0, x1, y1) inclusive, in the original image.
        image_size: (width, height) of the original image.
        resize_size: (width, height) of the frame, (224, 224) by default.

    Returns:
        (x0, y0, x1, y1) in the frame.
    """
    check_box_convention(np.asarray(box), "GT box")
    w, h = (float(v) for v in image_size)
    if not (w > 0 and h > 0):
        raise InputError(f"image size must be positive (width, height), got {tuple(image_size)}")
    nw, nh = (float(v) for v in resize_size)
    x0, y0, x1, y1 = (float(v) for v in box)
    return int(x0 * nw / w), int(y0 * nh / h), int(x1 * nw / w), int(y1 * nh / h)
