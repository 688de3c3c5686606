"""Output-path checks every writing command runs before any work, and its JSON writer.

A bad ``--out`` / ``--json`` (an existing directory where a file goes, a file where a folder goes, one of the
command's own inputs) is refused with a :class:`~fcam_deploy.errors.ConfigError` before anything is computed or
written, so it costs nothing and leaves every existing file as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fcam_deploy._io import atomic_write_text
from fcam_deploy.errors import ConfigError

__all__ = ["output_dir", "output_file", "refuse_overwriting_inputs", "write_json"]


def _existing_ancestor(path: Path) -> Path:
    anc = path
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    return anc


def output_file(path: Path, flag: str) -> Path:
    """Check that ``path`` can become a file: not a directory, and its nearest existing ancestor is a folder.

    Raises:
        ConfigError: naming ``flag`` and the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory; give a file path (e.g. {path / 'out'}{path.suffix or ''})")
    anc = _existing_ancestor(path.parent)
    if not anc.is_dir():
        raise ConfigError(f"{flag} {path}: {anc} is a file, not a folder; choose another path")
    if anc.exists() and not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: no write permission in {anc}")
    return path


def output_dir(path: Path, flag: str) -> Path:
    """Check that ``path`` is, or can become, a folder.

    Raises:
        ConfigError: naming ``flag`` and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} exists and is not a folder; give a folder path")
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise ConfigError(f"{flag} {path}: {anc} is a file, not a folder; choose another path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: no write permission in {anc}")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(out: Path, inputs: Iterable[Path], flag: str) -> None:
    """Raise :class:`ConfigError` when the output ``out`` is (the same file as) one of ``inputs``."""
    for src in inputs:
        if _same_file(Path(out), Path(src)) or Path(out).absolute() == Path(src).absolute():
            raise ConfigError(
                f"{flag} {out} is one of the command's inputs ({src}); it would be overwritten, choose another path"
            )


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as strict JSON (no NaN / Infinity tokens) atomically (:func:`fcam_deploy._io.atomic_path`).

    Raises:
        ConfigError: ``obj`` holds NaN / infinity or a value JSON cannot represent (nothing is written).
    """
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: result is not strict JSON ({exc}); nothing was written") from exc
    atomic_write_text(path, text + "\n")
