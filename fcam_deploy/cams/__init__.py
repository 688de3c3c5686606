"""CAM-family localization maps behind one API (TorchCAM spirit).

- :func:`compute_maps` ``(model, images, method, classes=None, **kw) -> CamResult``;
- extractors (context managers): :class:`CAM`, :class:`GradCAM`, :class:`GradCAMpp`, :class:`XGradCAM`,
  :class:`LayerCAM`, :class:`ScoreCAM`, :class:`LPCAM`, :class:`FCAMMap`;
- forward-only, ONNX-exportable heads for a layer feeding GAP -> Linear: :class:`CAMHead`, :class:`GradCAMHead`,
  :class:`GradCAMppHead`, :class:`XGradCAMHead`, :class:`LayerCAMHead`, :class:`LPCAMHead`,
  and :class:`ClosedFormCAM` (classifier + head in one exportable module);
- LPCAM prototypes: :func:`fit_lpcam` (= :func:`cluster_lpcam` + :meth:`LPCAMClusters.select`),
  :func:`select_lpcam_thresholds` (thresholds chosen on a validation split), :func:`class_balanced_indices`,
  :class:`LPCAMPrototypes`, :func:`load_lpcam`, :class:`MissingContextWarning`.

Module layers (no import cycle): ``_core`` <- ``prototypes``, ``closed_form``, ``gradient`` <- ``extractors``
<- ``lpcam``, ``fcam_map`` <- ``api``.
"""

from fcam_deploy.cams._core import (
    CamResult,
    finalize_maps,
    minmax_normalize,
    upsample_maps,
)
from fcam_deploy.cams.api import METHODS, compute_maps, make_extractor
from fcam_deploy.cams.closed_form import (
    CLOSED_FORM_HEADS,
    CAMHead,
    ClosedFormCAM,
    GradCAMHead,
    GradCAMppHead,
    LayerCAMHead,
    LPCAMHead,
    XGradCAMHead,
)
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
from fcam_deploy.cams.lpcam import (
    LPCAM,
    OFFICIAL_SCALES,
    ThresholdSearch,
    cluster_lpcam,
    fit_lpcam,
    select_lpcam_thresholds,
)
from fcam_deploy.cams.prototypes import (
    LPCAMClusters,
    LPCAMPrototypes,
    MissingContextWarning,
    class_balanced_indices,
    kmeans_cosine,
    load_lpcam,
)

__all__ = [
    "CAM",
    "CLOSED_FORM_HEADS",
    "LPCAM",
    "METHODS",
    "OFFICIAL_SCALES",
    "BaseExtractor",
    "CAMHead",
    "CamResult",
    "ClosedFormCAM",
    "FCAMMap",
    "GradCAM",
    "GradCAMHead",
    "GradCAMpp",
    "GradCAMppHead",
    "LPCAMClusters",
    "LPCAMHead",
    "LPCAMPrototypes",
    "LayerCAM",
    "LayerCAMHead",
    "MissingContextWarning",
    "ScoreCAM",
    "ThresholdSearch",
    "XGradCAM",
    "XGradCAMHead",
    "class_balanced_indices",
    "cluster_lpcam",
    "compute_maps",
    "finalize_maps",
    "fit_lpcam",
    "kmeans_cosine",
    "load_lpcam",
    "make_extractor",
    "minmax_normalize",
    "select_lpcam_thresholds",
    "upsample_maps",
]
