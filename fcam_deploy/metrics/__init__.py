"""WSOL localization metrics, exactly as wsolevaluation computes them, with a fast exact engine.

* :class:`BoxEvaluator` -- MaxBoxAcc (v1), MaxBoxAccV2, top-1/top-5 localization (streaming).
* :class:`MaskEvaluator` -- PxAP (streaming, pooled histograms).
* :func:`evaluate_maps` -- a whole set from maps + metadata; :func:`load_map` / :func:`save_map` for the
  ``<image_id>.npy`` layout of ``fcam score``.
* protocol rules: :func:`cam_thresholds`, :func:`resize_box`, :func:`iou_matrix`, :func:`validate_scoremap`.
* engines: :func:`fcam_deploy.metrics.reference.best_ious_reference` (OpenCV, one findContours per threshold)
  and :func:`fcam_deploy.metrics.fast.best_ious_fast` (numba component-tree sweep), identical numbers.
"""

from fcam_deploy.metrics.dataset import evaluate_maps, load_map, map_path, save_map
from fcam_deploy.metrics.evaluators import BoxEvaluator, MaskEvaluator, load_gt_mask, pxap_from_histograms
from fcam_deploy.metrics.protocol import (
    RESIZE_LENGTH,
    BoxConventionError,
    UndefinedMetricError,
    cam_thresholds,
    check_box_convention,
    iou_matrix,
    resize_box,
    scoremap_to_uint8,
    validate_scoremap,
)

__all__ = [
    "RESIZE_LENGTH",
    "BoxConventionError",
    "BoxEvaluator",
    "MaskEvaluator",
    "UndefinedMetricError",
    "cam_thresholds",
    "check_box_convention",
    "evaluate_maps",
    "iou_matrix",
    "load_gt_mask",
    "load_map",
    "map_path",
    "pxap_from_histograms",
    "resize_box",
    "save_map",
    "scoremap_to_uint8",
    "validate_scoremap",
]
