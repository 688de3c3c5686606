"""Shared helpers of the cam_postprocess tests: the WSOL protocol's cv2 box path and comparisons."""

from __future__ import annotations

import numpy as np

from fcam_deploy.ops import PostprocessResult


def protocol_boxes_cv2(full: np.ndarray, tau: float) -> tuple[list[int], np.ndarray, list[list[int]]]:
    """wsolevaluation ``compute_bboxes_from_scoremaps`` for one map and one threshold, written out.

    Returns (the v1 box, the binary mask, the boxes of all OUTER contours in cv2's order).
    """
    import cv2

    u8 = (full * 255).astype(np.uint8)
    _, th = cv2.threshold(u8, int(tau * np.max(u8)), 255, cv2.THRESH_BINARY)
    contours, hier = cv2.findContours(th, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    h, w = full.shape

    def box(c: np.ndarray) -> list[int]:
        x, y, bw, bh = cv2.boundingRect(c)
        return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]

    if len(contours) == 0:
        return [0, 0, 0, 0], th, []
    v1 = box(max(contours, key=cv2.contourArea))
    outer = []
    for i, c in enumerate(contours):
        depth, p = 0, hier[0][i][3]
        while p >= 0:
            depth, p = depth + 1, hier[0][p][3]
        if depth % 2 == 0:
            outer.append(box(c))
    return v1, th, outer


def assert_same(native: PostprocessResult, ref: PostprocessResult, what: str = "") -> None:
    """Exact masks, boxes and counts; ``full`` bit for bit (the spec's operation order; -0.0 != +0.0)."""
    full, mask, boxes, count = (
        np.asarray(getattr(native, f)) if not hasattr(getattr(native, f), "numpy") else getattr(native, f).cpu().numpy()
        for f in ("full", "mask", "boxes", "count")
    )
    assert full.shape == ref.full.shape and full.dtype == np.float32, what
    assert mask.dtype == np.uint8 and boxes.dtype == np.int32 and count.dtype == np.int32, what
    np.testing.assert_allclose(full, ref.full, rtol=0, atol=1e-6, err_msg=what)
    np.testing.assert_array_equal(
        full.view(np.uint32),
        np.asarray(ref.full, np.float32).view(np.uint32),
        err_msg=f"{what}: full is not bit-identical",
    )
    np.testing.assert_array_equal(mask, ref.mask, err_msg=what)
    np.testing.assert_array_equal(count, ref.count, err_msg=what)
    np.testing.assert_array_equal(boxes, ref.boxes, err_msg=what)
