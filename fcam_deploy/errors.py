"""Typed errors shared by every part of fcam-deploy.

Every error names the problem and, where there is one, the fix. All derive from :class:`FcamError`, so a caller
(and the ``fcam`` CLI) can catch one base class; each also derives from the builtin that fits (``ValueError``,
``RuntimeError``, ...) so generic handlers keep working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "FcamError",
    "FcamWarning",
    "ImageError",
    "InputError",
    "MapError",
    "MetadataError",
    "MissingExtraError",
    "ModelFormatError",
]


class FcamError(Exception):
    """Base class of every error raised on purpose by fcam-deploy."""


class FcamWarning(UserWarning):
    """Base class of every warning fcam-deploy issues on purpose (filter them with ``warnings.simplefilter``)."""


class MetadataError(FcamError, ValueError):
    """A WSOL metadata file is malformed.

    Args:
        path: the metadata file.
        line: 1-based line number, or ``None`` when the problem is not tied to one line.
        problem: what is wrong.
        fix: how to fix it (optional).
    """

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str = "") -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        msg = f"{where}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class ImageError(FcamError, ValueError):
    """An image file cannot be used (missing, corrupt, truncated, unsupported mode, decompression bomb)."""


class InputError(FcamError, ValueError):
    """A tensor/array/image handed to a public API has the wrong type, dtype, shape, range or content."""


class MapError(FcamError, ValueError):
    """A saved localization map (``<image_id>.npy``) is unusable: missing, wrong shape, NaN, outside [0, 1]."""


class ConfigError(FcamError, ValueError):
    """A configuration value or file is invalid."""


class CheckpointError(FcamError, ValueError):
    """A checkpoint is missing, incomplete, of an unknown format/version, or does not match its config."""


class ModelFormatError(FcamError, ValueError):
    """A model file is of another kind or version than the caller asked for (e.g. a .plan given as .onnx)."""


class BackendUnavailableError(FcamError, RuntimeError):
    """An optional backend or native library (onnxruntime, tensorrt, a plugin .so, the torch extension) is
    not installed or cannot be loaded. The message says what to install or which path/env var to set."""


class MissingExtraError(BackendUnavailableError):
    """A feature needs an optional dependency group (``pip install "fcam-deploy[EXTRA]"``) that is not installed.

    Attributes:
        extra: the extra's name (``train``, ``gpu``, ``scale``, ...).
        missing: the importable modules of that extra that were not found.
    """

    def __init__(self, extra: str, missing: list[str], what: str) -> None:
        self.extra = extra
        self.missing = list(missing)
        super().__init__(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed); "
            f'fix: pip install "fcam-deploy[{extra}]"'
        )
