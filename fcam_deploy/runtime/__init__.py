"""Run an exported (or checkpointed) localizer on torch, ONNX Runtime or TensorRT with one API.

``Localizer.load(path, backend="auto")`` then ``predict(images)``; see :mod:`fcam_deploy.runtime.localizer`.
The runner contract every backend implements is :class:`fcam_deploy.runtime.base.Runner`.
Nothing heavy is imported until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fcam_deploy._lazy import lazy_exports

if TYPE_CHECKING:
    from fcam_deploy.runtime.base import ModelMetadata, Runner
    from fcam_deploy.runtime.localizer import Box, Localizer, Prediction

__all__ = [
    "Box",
    "Localizer",
    "ModelMetadata",
    "Prediction",
    "Runner",
]

_EXPORTS: dict[str, str] = {
    "Box": "localizer",
    "Localizer": "localizer",
    "Prediction": "localizer",
    "ModelMetadata": "base",
    "Runner": "base",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
