"""Import the ``scale`` extra's packages (Ray, pyarrow) with a typed error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from fcam_deploy.errors import MissingExtraError

__all__ = ["SCALE_EXTRA_HINT", "require"]

#: What to install when a module of the ``scale`` extra is missing.
SCALE_EXTRA_HINT = 'pip install "fcam-deploy[scale]"'


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"ray.data"``, ``"pyarrow.parquet"``) or explain how to get it.

    Args:
        module: the dotted module name.
        what: the feature that needs it (goes into the message, e.g. ``"fcam localize --engine ray"``).

    Raises:
        MissingExtraError: the module (or a dependency of it) is not installed (names the ``scale`` extra).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError("scale", [module.split(".")[0]], what) from exc
