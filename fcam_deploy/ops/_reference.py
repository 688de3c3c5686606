"""Pure NumPy reference of ``cam_postprocess`` (the fallback and the test oracle).

It follows the spec in ``kernels/README.md`` operation by operation in float32 (normalisation in float64),
so the native launchers must agree with it exactly (masks, boxes, counts) and within 1e-6 on ``full``.
Components come from :func:`scipy.ndimage.label` with an 8-connected structure; in protocol mode the ranking
key is :func:`cv2.contourArea` of each component's outer contour (``cv2.findContours``, ``RETR_EXTERNAL``),
the quantity the WSOL protocol maximises.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["PostprocessResult", "axis_taps", "cam_postprocess_reference"]


class PostprocessResult(NamedTuple):
    """Outputs of ``cam_postprocess`` (NumPy or torch tensors, same layout).

    full: float32 (N, H, W) in [0, 1]; mask: uint8 (N, H, W) with values 0/1; boxes: int32 (N, K, 4) as
    (x0, y0, x1, y1) inclusive pixel extents, unused slots -1; count: int32 (N,) valid boxes per map.
    """

    # np.ndarray from the NumPy reference, torch.Tensor from the torch op: Any, since a NamedTuple cannot be
    # Generic on Python 3.10
    full: Any
    mask: Any
    boxes: Any
    count: Any  # the op's output name (shadows tuple.count, deliberately)


def axis_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of one axis of torch's bilinear upsampling (align_corners=False).

    Returns ``(i0, i1, l0, l1)``, each of length ``out_size``: output ``y`` reads rows ``i0[y]`` and
    ``i1[y]`` with weights ``l0[y]`` and ``l1[y]`` (float32 arithmetic, as in ATen).
    """
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    real = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    real = np.maximum(real, np.float32(0.0))
    i0 = np.minimum(real.astype(np.int64), in_size - 1)
    i1 = i0 + (i0 < in_size - 1).astype(np.int64)
    l1 = (real - i0.astype(np.float32)).astype(np.float32)
    l0 = (np.float32(1.0) - l1).astype(np.float32)
    return i0, i1, l0, l1


def _clamp_unit(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] with -0.0 (and NaN) -> +0.0, as the launchers do: ``full`` never holds -0.0."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x > 0, np.minimum(x, np.float32(1.0)), np.float32(0.0)).astype(np.float32)


def _lowres(m: np.ndarray, normalize: bool) -> np.ndarray:
    if not np.all(np.isfinite(m)):
        return np.zeros_like(m, dtype=np.float32)
    if not normalize:
        return _clamp_unit(m)
    lo = float(m.min())
    rng = float(m.max()) - lo
    if not rng > 0.0:
        return np.zeros_like(m, dtype=np.float32)
    return ((m.astype(np.float64) - lo) * (1.0 / rng)).astype(np.float32)


def _upsample(v: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    yi0, yi1, yl0, yl1 = axis_taps(v.shape[0], out_h)
    xi0, xi1, xl0, xl1 = axis_taps(v.shape[1], out_w)
    v00 = v[yi0][:, xi0]
    v01 = v[yi0][:, xi1]
    v10 = v[yi1][:, xi0]
    v11 = v[yi1][:, xi1]
    top = xl0[None, :] * v00 + xl1[None, :] * v01
    bot = xl0[None, :] * v10 + xl1[None, :] * v11
    r = yl0[:, None] * top + yl1[:, None] * bot
    return _clamp_unit(r)


def _threshold(full: np.ndarray, tau: float, quantize_uint8: bool) -> np.ndarray:
    if quantize_uint8:
        u8 = (full * np.float32(255.0)).astype(np.uint8)  # truncation, as numpy's astype in the protocol
        thr = int(tau * int(u8.max()))
        return (u8.astype(np.int32) > thr).astype(np.uint8)
    thr32 = np.float32(tau) * np.float32(full.max())
    return (full > thr32).astype(np.uint8)


def _components(mask: np.ndarray, protocol_boxes: bool, max_boxes: int) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    h, w = mask.shape
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=np.int32))
    boxes = np.full((max_boxes, 4), -1, dtype=np.int32)
    if n == 0:
        if protocol_boxes:
            boxes[0] = 0
            return boxes, 1
        return boxes, 0
    flat = labels.ravel()
    idx = np.arange(flat.size)
    fg = flat > 0
    lab = flat[fg] - 1
    counts = np.bincount(lab, minlength=n)
    starts = np.full(n, flat.size, dtype=np.int64)
    np.minimum.at(starts, lab, idx[fg])
    ys, xs = idx[fg] // w, idx[fg] % w
    x0 = np.full(n, w, dtype=np.int64)
    x1 = np.full(n, -1, dtype=np.int64)
    y1 = np.full(n, -1, dtype=np.int64)
    np.minimum.at(x0, lab, xs)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    y0 = starts // w
    if protocol_boxes:
        import cv2

        area2 = np.empty(n, dtype=np.int64)
        for c in range(n):
            comp = (labels == c + 1).astype(np.uint8)
            contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            area2[c] = round(2.0 * cv2.contourArea(contours[0]))
        # contour area desc, then the later start pixel first (cv2's list order for top-level contours)
        order = np.lexsort((-starts, -area2))
    else:
        order = np.lexsort((starts, -counts))  # pixel count desc, then the earlier start pixel first
    keep = order[:max_boxes]
    for k, c in enumerate(keep):
        bx1, by1 = int(x1[c]), int(y1[c])
        if protocol_boxes:
            bx1, by1 = min(bx1 + 1, w - 1), min(by1 + 1, h - 1)
        boxes[k] = (x0[c], y0[c], bx1, by1)
    return boxes, len(keep)


def cam_postprocess_reference(
    maps: npt.ArrayLike,
    out_h: int,
    out_w: int,
    tau: float,
    quantize_uint8: bool = False,
    protocol_boxes: bool = False,
    max_boxes: int = 1,
    normalize: bool = True,
) -> PostprocessResult:
    """NumPy reference of the op; same arguments and outputs as :func:`fcam_deploy.ops.cam_postprocess`.

    Args:
        maps: float32 (N, h, w). Non-finite values make that map all zeros (the native behaviour; the public
            wrapper rejects them before).
    Returns:
        :class:`PostprocessResult` of NumPy arrays.
    """
    m = np.asarray(maps, dtype=np.float32)
    n = m.shape[0]
    full = np.zeros((n, out_h, out_w), dtype=np.float32)
    mask = np.zeros((n, out_h, out_w), dtype=np.uint8)
    boxes = np.full((n, max_boxes, 4), -1, dtype=np.int32)
    count = np.zeros((n,), dtype=np.int32)
    for i in range(n):
        full[i] = _upsample(_lowres(m[i], normalize), out_h, out_w)
        mask[i] = _threshold(full[i], tau, quantize_uint8)
        boxes[i], count[i] = _components(mask[i], protocol_boxes, max_boxes)
    return PostprocessResult(full, mask, boxes, count)
