"""The optional dependency groups (``pip install "fcam-deploy[EXTRA]"``) and the check that names a missing one.

The base install is the lean runtime (numpy, pillow, onnxruntime and the compiled core): ``Localizer`` on ``.onnx``
models, ``fcam predict``, ``fcam doctor``, ``fcam data``. Everything that trains, evaluates, exports or benchmarks
needs the ``train`` extra. Checks use ``importlib.util.find_spec``: nothing is imported.
"""

from __future__ import annotations

import importlib.util

from fcam_deploy.errors import MissingExtraError

__all__ = ["EXTRA_MODULES", "missing_modules", "require_extra"]

#: extra -> the top-level modules that must be importable for it (``pyproject.toml`` lists the distributions).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": (
        "torch",
        "torchvision",
        "onnx",
        "onnxscript",
        "safetensors",
        "cv2",
        "scipy",
        "numba",
        "timm",
        "polygraphy",
        "matplotlib",
        "skimage",
        "tqdm",
    ),
    "gpu": ("tensorrt",),
    "scale": ("ray", "pyarrow", "tritonclient"),
}


def missing_modules(extra: str) -> list[str]:
    """Modules of ``extra`` that cannot be found (empty when the extra is installed)."""
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`~fcam_deploy.errors.MissingExtraError` when ``extra`` is not installed.

    Args:
        extra: a key of :data:`EXTRA_MODULES`.
        what: the feature, for the message (``"fcam train"``, ``"the torch backend"``).
    """
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(extra, missing, what)
