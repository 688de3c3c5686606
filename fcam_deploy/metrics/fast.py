"""Fast box engine: every threshold of a map from one union-find sweep per component tree.

Thresholds act on uint8 values, so a map has at most 256 distinct binarisations ``u8 > L``. Adding pixels in
decreasing value order with a union-find (8-connectivity) yields the foreground components of every level ``L``
(the max-tree); adding them in increasing order (4-connectivity, plus a virtual node for the outside of the image)
yields the background components of every level, of which those not reaching the border are the holes that
``cv2.findContours(RETR_TREE)`` returns as extra contours. Their boxes follow from bounding boxes alone:

* outer contour of a component with pixel extents ``[x0, x1] x [y0, y1]`` -> ``cv2.boundingRect`` spans the same
  pixels, protocol box ``(x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1))``;
* hole contour of a hole with extents ``[hx0, hx1] x [hy0, hy1]`` -> the traced border runs on the foreground
  pixels 4-adjacent to the hole, so its rectangle is the hole's grown by one pixel:
  ``(hx0 - 1, hy0 - 1, min(hx1 + 2, W - 1), min(hy1 + 2, H - 1))``. A hole box can beat its component's box
  (a GT box inside a ring), so holes are evaluated, not skipped.

v1 keeps the single contour of largest ``cv2.contourArea`` (polygon area through the traced pixel centres, NOT a
pixel count). Every contour lies inside the outer contour of a top-level component (one not inside a hole), so the
largest is a top-level outer contour. Top-level components are the 8-components of the hole-filled map
``{c > L}`` (``c`` = the level at which a pixel joins the border-connected background, a priority flood), and the
polygon area of a filled 8-component equals ``#(2x2 cells with 4 corners in it) + 1/2 #(cells with 3)``, which the
same union-find sweep accumulates. Only where several top-level components tie for the largest area does OpenCV's
list order decide; those levels are handed to the OpenCV reference (:func:`reference.boxes_at_level`), once per
distinct level. The tests check equality with the reference on thousands of random and structured maps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fcam_deploy.errors import BackendUnavailableError, InputError
from fcam_deploy.metrics.protocol import check_box_convention, iou_matrix, level_thresholds
from fcam_deploy.metrics.reference import boxes_at_level

__all__ = ["best_ious_fast", "fast_engine_available"]

_EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def fast_engine_available() -> bool:
    """True when numba (the fast engine's compiler) can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _kernel() -> Callable[..., tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The compiled :func:`fcam_deploy.metrics._sweep.sweep` (numba compiles or loads it on first import)."""
    try:
        from fcam_deploy.metrics._sweep import sweep
    except ImportError as exc:  # numba missing or broken
        raise BackendUnavailableError(
            f"the fast metrics engine needs numba ({exc}); `pip install numba`, or use engine='reference'"
        ) from exc
    return sweep


def best_ious_fast(
    u8: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: np.ndarray,
    v1: bool = True,
    v2: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Best IoU with the GT at every CAM threshold, for v1 (largest contour) and/or V2 (all contours).

    Identical numbers to :func:`fcam_deploy.metrics.reference.best_ious_reference`.

    Args:
        u8: uint8 (H, W) map, ``uint8(s * 255)``.
        gt_boxes: int (G, 4) GT boxes (x0, y0, x1, y1) in the map's frame, G >= 1.
        thresholds: float64 (T,) CAM thresholds in [0, 1).
        v1: compute the v1 curve.
        v2: compute the V2 curve.

    Returns:
        ``(v1_best, v2_best)``, each float64 (T,) or None when not asked for.
    """
    gt = np.ascontiguousarray(check_box_convention(gt_boxes, "GT boxes"), dtype=np.int64)
    if gt.shape[0] == 0:
        raise InputError("at least one GT box is needed")
    if not isinstance(u8, np.ndarray) or u8.dtype != np.uint8 or u8.ndim != 2 or u8.size == 0:
        raise InputError(f"expected a uint8 (H, W) map, got {getattr(u8, 'dtype', type(u8))} {np.shape(u8)}")
    u8 = np.ascontiguousarray(u8)
    top, fg_best, hole_best, _n_holes, v1_iou, v1_tie = _kernel()(u8, gt, bool(v1), bool(v2))
    levels = level_thresholds(thresholds, int(top))
    empty = levels >= top  # no foreground (also covers top == 0)
    lv = np.minimum(levels, 255)
    empty_iou = float(iou_matrix(_EMPTY_BOX, gt).max())

    out_v2 = None
    if v2:
        out_v2 = np.where(empty, empty_iou, np.maximum(fg_best[lv], hole_best[lv]))
    out_v1 = None
    if v1:
        out_v1 = np.where(empty, empty_iou, v1_iou[lv])
        undecided = (~empty) & (v1_tie[lv] > 0)
        if undecided.any():
            for level in np.unique(levels[undecided]):
                boxes = boxes_at_level(u8, int(level), multi_contour=False)
                out_v1[levels == level] = iou_matrix(boxes, gt).max()
    return out_v1, out_v2
