"""One entry point for every localization method: :func:`compute_maps`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fcam_deploy.cams._core import CamResult
from fcam_deploy.cams.extractors import (
    CAM,
    BaseExtractor,
    GradCAM,
    GradCAMpp,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from fcam_deploy.cams.fcam_map import FCAMMap
from fcam_deploy.cams.lpcam import LPCAM
from fcam_deploy.cams.prototypes import LPCAMPrototypes
from fcam_deploy.errors import InputError

__all__ = ["METHODS", "compute_maps", "make_extractor"]

#: method name -> extractor class.
METHODS: dict[str, type[BaseExtractor | FCAMMap]] = {
    "cam": CAM,
    "gradcam": GradCAM,
    "gradcampp": GradCAMpp,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "lpcam": LPCAM,
    "fcam": FCAMMap,
}


def make_extractor(model: nn.Module, method: str, **kw: Any) -> BaseExtractor | FCAMMap:
    """Build the extractor of ``method`` (a key of :data:`METHODS`) with its keyword options.

    Options: ``upsample`` (all; fcam resizes only when its map is not at the input size), ``target_layer`` and
    ``normalize`` (all but fcam), ``head`` and ``impl``
    (cam and the gradient methods), ``batch_size`` (scorecam), ``prototypes`` (required), ``flip`` and ``scales`` (lpcam).
    """
    if method not in METHODS:
        raise InputError(f"unknown CAM method {method!r} (choose one of {sorted(METHODS)})")
    if method == "lpcam":
        prototypes: LPCAMPrototypes | str | Path | None = kw.pop("prototypes", None)
        if prototypes is None:
            raise InputError("method 'lpcam' needs prototypes= (LPCAMPrototypes or the path of a fitted file)")
        return LPCAM(model, prototypes, **kw)
    if method == "fcam":
        extra = sorted(set(kw) - {"upsample"})
        if extra:
            raise InputError(f"method 'fcam' takes only the upsample= option, got {extra}")
        return FCAMMap(model, **kw)
    try:
        return METHODS[method](model, **kw)
    except TypeError as exc:
        raise InputError(f"bad option for method {method!r}: {exc}") from exc


def compute_maps(model: nn.Module, images: Tensor, method: str, classes: Any = None, **kw: Any) -> CamResult:
    """Localization maps of ``images`` by ``method``.

    Args:
        model: a CAMClassifier (any classifier whose ``cam_layer`` feeds GAP -> ``head``; other layers through
            ``target_layer=``), or an F-CAM model for ``method="fcam"``.
        images: ``(N, 3, H, W)`` float, normalised.
        method: ``cam | gradcam | gradcampp | xgradcam | layercam | scorecam | lpcam | fcam``.
        classes: ground truth when given (int, N ints or an ``(N,)`` tensor), else the top-1 prediction.
        **kw: options of the method's extractor, see :func:`make_extractor`.

    Returns:
        :class:`CamResult`: ``lowres (N, h, w)`` and ``full (N, H, W)`` in [0, 1] on the model's device.
        Low-res maps are min-max normalised (NaN/constant -> 0), then bilinearly upsampled (align_corners=False);
        ``upsample="bicubic_cv2"`` instead resizes the raw map with OpenCV INTER_CUBIC and normalises after it
        (wsolevaluation). F-CAM's map is its fg probability as is.
    """
    with make_extractor(model, method, **kw) as extractor:
        return extractor(images, classes)
