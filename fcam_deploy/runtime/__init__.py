"""Run an exported (or checkpointed) localizer on torch, ONNX Runtime or TensorRT with one API.

``Localizer.load(path, backend="auto")`` then ``predict(images)``; see :mod:`fcam_deploy.runtime.localizer`.
The runner contract every backend implements is :class:`fcam_deploy.runtime.base.Runner`.
Nothing heavy is imported until a name is used.
"""

from __future__ import annotations

from fcam_deploy._lazy import lazy_exports

__all__ = [
    "Box",
    "Localizer",
    "ModelMetadata",
    "Prediction",
    "Runner",
]

_WHERE = {
    "Box": "localizer",
    "Localizer": "localizer",
    "Prediction": "localizer",
    "ModelMetadata": "base",
    "Runner": "base",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
