"""Reference box engine: the protocol done literally with OpenCV, one contour extraction per threshold.

This is the oracle the fast engine (:mod:`fcam_deploy.metrics.fast`) is tested against, and the baseline of the
speed benchmark (``benchmarks/evaluator``). It follows wsolevaluation's ``compute_bboxes_from_scoremaps``
step by step: ``cv2.threshold(u8, int(t * max(u8)), 255, THRESH_BINARY)``, ``cv2.findContours(RETR_TREE,
CHAIN_APPROX_SIMPLE)``, no contour -> ``[0, 0, 0, 0]``, v1 keeps ``max(contours, key=cv2.contourArea)``,
``cv2.boundingRect`` -> ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fcam_deploy.errors import InputError
from fcam_deploy.metrics.protocol import check_box_convention, iou_matrix, scoremap_to_uint8, validate_scoremap

__all__ = ["best_ious_reference", "boxes_at_level", "boxes_from_scoremap"]


def _contours(binary: np.ndarray) -> Sequence[Any]:
    import cv2

    # cv2 3.x returns (image, contours, hierarchy); 2.x/4.x/5.x return (contours, hierarchy).
    return cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]


def boxes_at_level(u8: np.ndarray, level: int, multi_contour: bool) -> np.ndarray:
    """Boxes of the binarisation ``u8 > level`` exactly as the protocol derives them.

    Args:
        u8: uint8 (H, W) map (``uint8(s * 255)``).
        level: the integer threshold ``int(t * max(u8))``.
        multi_contour: True for MaxBoxAccV2 (all contours, holes included), False for v1 (largest by area).

    Returns:
        int64 (K, 4) boxes (x0, y0, x1, y1); ``[[0, 0, 0, 0]]`` when there is no contour.
    """
    import cv2

    if not isinstance(u8, np.ndarray) or u8.dtype != np.uint8 or u8.ndim != 2:
        raise InputError(f"expected a uint8 (H, W) map, got {getattr(u8, 'dtype', type(u8))} {np.shape(u8)}")
    height, width = u8.shape
    _, binary = cv2.threshold(np.ascontiguousarray(u8), int(level), 255, cv2.THRESH_BINARY)
    contours = _contours(binary)
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    out = np.empty((len(contours), 4), dtype=np.int64)
    for k, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        out[k] = (x, y, min(x + w, width - 1), min(y + h, height - 1))
    return out


def boxes_from_scoremap(
    scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray, multi_contour: bool
) -> list[np.ndarray]:
    """Boxes at every CAM threshold (the reference's ``compute_bboxes_from_scoremaps``).

    Args:
        scoremap: float (H, W) map in [0, 1].
        thresholds: CAM thresholds t (float64).
        multi_contour: V2 (all contours) when True, v1 (largest contour) when False.

    Returns:
        One int64 (K_t, 4) array per threshold.
    """
    u8 = scoremap_to_uint8(validate_scoremap(scoremap))
    top = np.max(u8)
    return [boxes_at_level(u8, int(t * top), multi_contour) for t in np.asarray(thresholds, dtype=np.float64)]


def best_ious_reference(
    u8: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, multi_contour: bool
) -> np.ndarray:
    """Best IoU between any predicted box and any GT box, at every threshold, one findContours per threshold.

    Args:
        u8: uint8 (H, W) map.
        gt_boxes: int (G, 4) GT boxes in the map's frame, G >= 1.
        thresholds: float64 (T,) CAM thresholds.
        multi_contour: V2 when True, v1 when False.

    Returns:
        float64 (T,).
    """
    gt = check_box_convention(gt_boxes, "GT boxes")
    if gt.shape[0] == 0:
        raise InputError("at least one GT box is needed")
    top = np.max(u8)
    # as wsolevaluation's BoxEvaluator.accumulate: boxes of every threshold, one IoU matrix, max per threshold
    per_threshold = [boxes_at_level(u8, int(t * top), multi_contour) for t in np.asarray(thresholds, np.float64)]
    counts = np.array([len(b) for b in per_threshold])
    ious = iou_matrix(np.concatenate(per_threshold, axis=0), gt).max(axis=1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.maximum.reduceat(ious, starts)
