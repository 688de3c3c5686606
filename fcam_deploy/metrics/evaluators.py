"""Streaming evaluators: MaxBoxAcc (v1), MaxBoxAccV2, top-1/top-5 localization and PxAP.

Usage (one map at a time, any order; maps in the 224 x 224 frame, float in [0, 1])::

    box = BoxEvaluator(iou_thresholds=(30, 50, 70), cam_curve_interval=0.001)
    for scoremap, gt_boxes, label, preds in items:
        box.accumulate(scoremap, gt_boxes, label=label, preds=preds)   # label/preds optional (top-1/5 loc)
    result = box.compute()    # {"MaxBoxAcc": .., "MaxBoxAccV2": .., "per_iou": {"30": ..}, ...} in percent

    mask = MaskEvaluator(cam_curve_interval=0.001)
    mask.accumulate(scoremap, load_gt_mask(mask_paths, ignore_path))
    mask.compute()["PxAP"]

The numbers are those of wsolevaluation (``docs/protocol.md`` §1) and, for top-1/top-5
localization, of the F-CAM code's ``BoxEvaluator`` (image counted when the GT class is the top-1 / among the
top-5 predictions AND the best IoU at that CAM threshold reaches the IoU threshold; the maximum over CAM
thresholds is taken separately for each IoU threshold, like MaxBoxAcc).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcam_deploy.errors import ImageError, InputError
from fcam_deploy.metrics.protocol import (
    RESIZE_LENGTH,
    UndefinedMetricError,
    cam_thresholds,
    check_box_convention,
    scoremap_to_uint8,
    validate_scoremap,
)

__all__ = ["BoxEvaluator", "Engine", "MaskEvaluator", "load_gt_mask", "pxap_from_histograms"]

log = logging.getLogger(__name__)

Engine = Literal["auto", "fast", "reference"]


def _resolve_engine(engine: str) -> str:
    if engine not in ("auto", "fast", "reference"):
        raise InputError(f"engine must be 'auto', 'fast' or 'reference', got {engine!r}")
    if engine == "auto":
        from fcam_deploy.metrics.fast import fast_engine_available

        if fast_engine_available():
            return "fast"
        log.warning("numba is not installed: box metrics use the slow OpenCV reference engine (pip install numba)")
        return "reference"
    return engine


def _key(iou: int) -> str:
    return str(int(iou))


@dataclass
class BoxEvaluator:
    """MaxBoxAcc (v1, largest contour, IoU 50), MaxBoxAccV2 (all contours, mean over IoU thresholds) and
    top-1/top-5 localization, accumulated one map at a time.

    Args:
        iou_thresholds: IoU thresholds in percent (default 30, 50, 70). MaxBoxAccV2 is the mean over them;
            MaxBoxAcc (v1) is reported at 50 and needs 50 in the list.
        cam_curve_interval: CAM threshold step (0.01: 100 thresholds, wsolevaluation's CLI default; 0.001:
            1000 thresholds, the papers' test setting).
        v1: compute MaxBoxAcc (v1).
        v2: compute MaxBoxAccV2.
        engine: "fast" (numba component-tree sweep), "reference" (one OpenCV findContours per threshold) or
            "auto" (fast when numba is importable). Both give identical numbers.
    """

    iou_thresholds: Sequence[int] = (30, 50, 70)
    cam_curve_interval: float = 0.01
    v1: bool = True
    v2: bool = True
    engine: Engine = "auto"
    thresholds: np.ndarray = field(init=False, repr=False)
    _engine: str = field(init=False, repr=False)
    _cnt: int = field(init=False, default=0)
    _correct: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)
    _top1: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)
    _top5: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)
    _with_preds: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        ious = [int(d) for d in self.iou_thresholds]
        if not ious or any(not (0 <= d <= 100) for d in ious) or len(set(ious)) != len(ious):
            raise InputError(f"iou_thresholds must be distinct percentages in [0, 100], got {self.iou_thresholds!r}")
        if not (self.v1 or self.v2):
            raise InputError("BoxEvaluator: enable at least one of v1 / v2")
        self.iou_thresholds = tuple(ious)
        self.thresholds = cam_thresholds(self.cam_curve_interval)
        self._engine = _resolve_engine(self.engine)
        t = len(self.thresholds)
        versions = [v for v, on in (("v1", self.v1), ("v2", self.v2)) if on]
        self._correct = {v: {d: np.zeros(t, np.int64) for d in ious} for v in versions}
        self._top1 = {v: {d: np.zeros(t, np.int64) for d in ious} for v in versions}
        self._top5 = {v: {d: np.zeros(t, np.int64) for d in ious} for v in versions}

    @property
    def num_images(self) -> int:
        """Number of maps accumulated so far."""
        return self._cnt

    def best_ious(self, scoremap: np.ndarray, gt_boxes: np.ndarray | Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Best IoU (any predicted box x any GT box) at every CAM threshold, without accumulating.

        Returns:
            ``{"v1": float64 (T,), "v2": float64 (T,)}`` (the versions enabled).
        """
        s = validate_scoremap(scoremap)
        gt = check_box_convention(gt_boxes, "GT boxes")
        if gt.shape[0] == 0:
            raise InputError("an image needs at least one GT box for box metrics")
        h, w = s.shape
        if (gt[:, 2] >= w).any() or (gt[:, 3] >= h).any():
            raise InputError(f"GT boxes {gt.tolist()} exceed the {w}x{h} map (resize them to the map frame first)")
        u8 = scoremap_to_uint8(s)
        out: dict[str, np.ndarray] = {}
        if self._engine == "fast":
            from fcam_deploy.metrics.fast import best_ious_fast

            r1, r2 = best_ious_fast(u8, gt, self.thresholds, v1=self.v1, v2=self.v2)
            if r1 is not None:
                out["v1"] = r1
            if r2 is not None:
                out["v2"] = r2
        else:
            from fcam_deploy.metrics.reference import best_ious_reference

            if self.v1:
                out["v1"] = best_ious_reference(u8, gt, self.thresholds, multi_contour=False)
            if self.v2:
                out["v2"] = best_ious_reference(u8, gt, self.thresholds, multi_contour=True)
        return out

    def accumulate(
        self,
        scoremap: np.ndarray,
        gt_boxes: np.ndarray | Sequence[Sequence[int]],
        label: int | None = None,
        preds: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Add one image.

        Args:
            scoremap: float (H, W) map in [0, 1] (224 x 224 in the protocol), no NaN.
            gt_boxes: int (G, 4) GT boxes (x0, y0, x1, y1) inclusive, already in the map's frame
                (see :func:`fcam_deploy.metrics.resize_box`), G >= 1.
            label: GT class (for top-1/top-5 localization; give it for every image or for none).
            preds: class indices ordered from most to least probable (at least 1; top-5 uses the first 5).
        """
        if (label is None) != (preds is None):
            raise InputError("give both label and preds (top-1/top-5 localization) or neither")
        ious = self.best_ious(scoremap, gt_boxes)
        top1 = top5 = False
        if label is not None and preds is not None:
            p = [int(c) for c in np.asarray(preds).ravel()]
            if not p:
                raise InputError("preds must list at least one class")
            top1 = int(label) == p[0]
            top5 = int(label) in p[:5]
            self._with_preds += 1
        for version, best in ious.items():
            for d in self.iou_thresholds:
                hit = best >= (d / 100)
                self._correct[version][d] += hit
                if top1:
                    self._top1[version][d] += hit
                if top5:
                    self._top5[version][d] += hit
        self._cnt += 1

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """Box accuracy (percent) at every CAM threshold: ``{"v1"|"v2": {"30": float64 (T,), ...}}``."""
        if self._cnt == 0:
            raise UndefinedMetricError("no image accumulated: box accuracy is undefined")
        return {v: {_key(d): c * 100.0 / float(self._cnt) for d, c in per.items()} for v, per in self._correct.items()}

    def compute(self) -> dict[str, Any]:
        """Final metrics (percent).

        Returns:
            ``{"MaxBoxAcc": v1 at IoU 50 | None, "MaxBoxAccV2": mean over IoU thresholds of V2 | None,
            "PxAP": None, "per_iou": {"30": V2 MaxBoxAcc(30), ...} | None, "per_iou_v1": {...} | None,
            "best_threshold": {"MaxBoxAcc": tau, "30": tau, ...}, "num_images": N,
            "top1_loc": {"MaxBoxAcc": v1 at 50, "30": V2 at 30, ...} | None, "top5_loc": same | None}``.
            The best CAM threshold is the first one reaching the maximum (``np.argmax``).
        """
        curves = self.curves()
        n = float(self._cnt)
        res: dict[str, Any] = {
            "MaxBoxAcc": None,
            "MaxBoxAccV2": None,
            "PxAP": None,
            "per_iou": None,
            "per_iou_v1": None,
            "best_threshold": {},
            "num_images": self._cnt,
            "top1_loc": None,
            "top5_loc": None,
            "cam_curve_interval": float(self.cam_curve_interval),
        }
        with_top = self._with_preds == self._cnt
        top1: dict[str, float] = {}
        top5: dict[str, float] = {}
        if "v2" in curves:
            per = {k: float(c.max()) for k, c in curves["v2"].items()}
            res["per_iou"] = per
            res["MaxBoxAccV2"] = float(np.mean([per[_key(d)] for d in self.iou_thresholds]))
            for d in self.iou_thresholds:
                res["best_threshold"][_key(d)] = float(self.thresholds[int(np.argmax(curves["v2"][_key(d)]))])
                top1[_key(d)] = float((self._top1["v2"][d] * 100.0 / n).max())
                top5[_key(d)] = float((self._top5["v2"][d] * 100.0 / n).max())
        if "v1" in curves:
            res["per_iou_v1"] = {k: float(c.max()) for k, c in curves["v1"].items()}
            if 50 in self.iou_thresholds:
                c50 = curves["v1"]["50"]
                res["MaxBoxAcc"] = float(c50.max())
                res["best_threshold"]["MaxBoxAcc"] = float(self.thresholds[int(np.argmax(c50))])
                top1["MaxBoxAcc"] = float((self._top1["v1"][50] * 100.0 / n).max())
                top5["MaxBoxAcc"] = float((self._top5["v1"][50] * 100.0 / n).max())
        if with_top:
            res["top1_loc"] = top1
            res["top5_loc"] = top5
        return res


def pxap_from_histograms(gt_true_hist: np.ndarray, gt_false_hist: np.ndarray) -> float:
    """PxAP (percent) from pooled score histograms, with the reference's right-step rule.

    Args:
        gt_true_hist: float/int (N + 2,) histogram of foreground-pixel scores over edges ``[t_0..t_{N-1}, 1, 2, 3]``.
        gt_false_hist: same for background pixels.

    Raises:
        UndefinedMetricError: no positive GT pixel, or no pixel at all.
    """
    tp_hist = np.asarray(gt_true_hist, dtype=float)
    fp_hist = np.asarray(gt_false_hist, dtype=float)
    num_true = tp_hist.sum()
    tp = tp_hist[::-1].cumsum()
    fn = num_true - tp
    fp = fp_hist[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise UndefinedMetricError("No positive ground truth in the eval set: PxAP is undefined")
    if ((tp + fp) <= 0).all():
        raise UndefinedMetricError("No positive prediction in the eval set: PxAP is undefined")
    nonzero = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[nonzero[1:]].sum()
    return float(auc * 100)


@dataclass
class MaskEvaluator:
    """PxAP: pixel-wise average precision from score histograms pooled over the whole set.

    Args:
        cam_curve_interval: histogram bin width; edges are ``np.arange(0, 1, step)`` + ``[1, 2, 3]``.
    """

    cam_curve_interval: float = 0.01
    edges: np.ndarray = field(init=False, repr=False)
    gt_true_hist: np.ndarray = field(init=False, repr=False)
    gt_false_hist: np.ndarray = field(init=False, repr=False)
    _cnt: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        thresholds = cam_thresholds(self.cam_curve_interval)
        self.edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.gt_true_hist = np.zeros(len(thresholds) + 2, dtype=float)
        self.gt_false_hist = np.zeros(len(thresholds) + 2, dtype=float)

    @property
    def num_images(self) -> int:
        """Number of maps accumulated so far."""
        return self._cnt

    def accumulate(self, scoremap: np.ndarray, gt_mask: np.ndarray) -> None:
        """Add one image.

        Args:
            scoremap: float (H, W) map in [0, 1], no NaN.
            gt_mask: uint8 (H, W): 1 foreground, 0 background, 255 ignore (dropped); see :func:`load_gt_mask`.
        """
        s = validate_scoremap(scoremap)
        m = np.asarray(gt_mask)
        if m.shape != s.shape:
            raise InputError(f"GT mask shape {m.shape} differs from the score map shape {s.shape}")
        bad = ~np.isin(m, (0, 1, 255))
        if bad.any():
            raise InputError(f"GT mask values must be 0 (bg), 1 (fg) or 255 (ignore), found {np.unique(m[bad])[:5]}")
        self.gt_true_hist += np.histogram(s[m == 1], bins=self.edges)[0].astype(float)
        self.gt_false_hist += np.histogram(s[m == 0], bins=self.edges)[0].astype(float)
        self._cnt += 1

    def compute(self) -> dict[str, Any]:
        """``{"PxAP": percent, "num_images": N}``."""
        if self._cnt == 0:
            raise UndefinedMetricError("no image accumulated: PxAP is undefined")
        return {"PxAP": pxap_from_histograms(self.gt_true_hist, self.gt_false_hist), "num_images": self._cnt}


def _read_mask(path: Path, size: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """One mask file in the evaluation frame (uint8 0..255, nearest resize). The header is read first: a
    decompression bomb (above :data:`fcam_deploy.data.images.DEFAULT_MAX_PIXELS`) or a mask whose size differs
    from its image's is refused before any pixel is decoded."""
    import cv2

    from fcam_deploy.data.images import image_size as header_size

    if not path.is_file():
        raise ImageError(f"mask file {path} does not exist")
    try:
        w, h = header_size(path)  # unreadable headers and pixel bombs
    except ImageError as exc:
        raise ImageError(f"mask file {path} cannot be decoded as a mask image: {exc}") from None
    if image_size is not None and (w, h) != tuple(image_size):
        raise ImageError(
            f"mask file {path} is {w}x{h} but its image is {image_size[0]}x{image_size[1]} (image_sizes.txt); "
            "masks must have their image's size"
        )
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ImageError(f"mask file {path} cannot be decoded as an image (corrupt or not a PNG/JPEG)")
    if img.shape != (h, w):
        raise ImageError(f"mask file {path}: decoded as {img.shape[1]}x{img.shape[0]}, header says {w}x{h}")
    # nearest-neighbour resize picks source pixels, so resizing the uint8 mask before the reference's float32 cast
    # gives the same values while keeping the full-size buffer at one byte per pixel
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32)


def load_gt_mask(
    mask_paths: Sequence[str | Path],
    ignore_path: str | Path | None = None,
    size: int = RESIZE_LENGTH,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """GT mask of one image in the evaluation frame, as the reference builds it.

    Each instance PNG is read as grayscale (``cv2.IMREAD_GRAYSCALE``), cast to float32, resized to size x size with
    nearest neighbour and binarised ``> 0.5``; the union of instances is the foreground. The ignore PNG (optional)
    goes through the same steps; ignore = ignore-box AND NOT foreground. With ``image_size`` (the image's
    ``(width, height)``), every mask must have exactly that size.

    Returns:
        uint8 (size, size): 1 foreground, 0 background, 255 ignore.

    Raises:
        ImageError: missing, undecodable, oversized (decompression bomb) or wrongly sized mask files.
    """
    if not mask_paths:
        raise InputError("an image needs at least one mask file for PxAP")
    fg = np.zeros((size, size), dtype=bool)
    for p in mask_paths:
        fg |= _read_mask(Path(p), size, image_size) > 0.5
    ignore = np.zeros((size, size), dtype=bool)
    if ignore_path is not None and str(ignore_path) != "":
        ignore = (_read_mask(Path(ignore_path), size, image_size) > 0.5) & ~fg
    return fg.astype(np.uint8) + 255 * ignore.astype(np.uint8)
