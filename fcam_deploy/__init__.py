"""fcam-deploy: weakly-supervised object localization (CAM family, F-CAM) from training to deployment.

Importing this package does no work: submodules are imported lazily on attribute access, and heavy optional
dependencies (onnxruntime, tensorrt, matplotlib, cv2) are only imported inside the functions that use them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the subpackages, imported on first attribute access (below); named here for type checkers
    from fcam_deploy import bench, cams, cli, data, errors, export, metrics, models, ops, runtime, train

__all__ = [
    "__version__",
    "bench",
    "cams",
    "cli",
    "data",
    "errors",
    "export",
    "metrics",
    "models",
    "ops",
    "runtime",
    "train",
]


def _read_version() -> str:
    try:
        return version("fcam-deploy")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


__version__: str = _read_version()


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
