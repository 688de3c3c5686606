"""Run an exported (or checkpointed) localizer on torch, ONNX Runtime or TensorRT with one API.

``Localizer.load(path, backend="auto")`` then ``predict(images)``; see :mod:`fcam_deploy.runtime.localizer`.
The runner contract every backend implements is :class:`fcam_deploy.runtime.base.Runner`.
Nothing heavy is imported until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
