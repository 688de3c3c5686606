"""The image set of ``fcam localize``: every image file under a folder, or the paths listed in a text file.

Each image has a *name* (the ``image`` column of the output: its path relative to the input root, with ``/``
separators) and a *path* (absolute, what workers open). Names are unique and the set is sorted by name, so the
same input gives the same order, whatever the engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fcam_deploy.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "ImageSet", "list_images"]

#: File suffixes (lower case) taken as images when a folder is walked.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


@dataclass(frozen=True)
class ImageSet:
    """Images to localize.

    Attributes:
        root: the folder names are relative to (the input folder, or the list file's folder).
        names: unique image names, sorted (posix relative paths; absolute for list entries outside ``root``).
        paths: absolute file paths, aligned with ``names``.
    """

    root: Path
    names: tuple[str, ...]
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def select(self, keep: set[str]) -> ImageSet:
        """The subset whose names are in ``keep`` (order kept)."""
        pairs = [(n, p) for n, p in zip(self.names, self.paths, strict=True) if n in keep]
        return ImageSet(self.root, tuple(n for n, _ in pairs), tuple(p for _, p in pairs))

    def all_relative(self) -> bool:
        """True when every name is a relative path without ``..`` (a file under :attr:`root`)."""
        return all(not PurePosixPath(n).is_absolute() and ".." not in PurePosixPath(n).parts for n in self.names)


def _walk(root: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in filenames:
            if fname.startswith(".") or Path(fname).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = Path(dirpath) / fname
            found.append((full.relative_to(root).as_posix(), str(full)))
    return found


def _read_list(list_file: Path) -> list[tuple[str, str]]:
    root = list_file.parent.resolve()
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{list_file}: cannot read the image list ({exc}); fix: a UTF-8 text file, one path a line"
        ) from exc
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        full = (p if p.is_absolute() else root / p).resolve()
        try:
            name = full.relative_to(root).as_posix()
        except ValueError:
            name = full.as_posix()
        if name in seen:
            raise ConfigError(
                f"{list_file}:{lineno}: {line!r} is the same image as line {seen[name]}; fix: list every image once"
            )
        seen[name] = lineno
        out.append((name, str(full)))
    return out


def list_images(source: str | Path) -> ImageSet:
    """The images of a folder (walked recursively; hidden files and folders skipped; suffixes in
    :data:`IMAGE_SUFFIXES`, any case) or of a list file (UTF-8, one path a line, relative paths resolved against the
    list's folder, blank lines and ``#`` comments skipped).

    Files that are missing or unreadable are *not* an error here: they become error rows when localized.

    Raises:
        ConfigError: ``source`` does not exist, holds no image, or a list names an image twice.
    """
    src = Path(source)
    if src.is_dir():
        root = src.resolve()
        pairs = _walk(root)
        where = f"folder {src}"
    elif src.is_file():
        if src.suffix.lower() in IMAGE_SUFFIXES:
            raise ConfigError(
                f"{src} is an image; --images takes a folder of images or a text file listing them (one per line)"
            )
        root = src.parent.resolve()
        pairs = _read_list(src)
        where = f"list {src}"
    else:
        raise ConfigError(f"{src}: no such folder or image list (fix: check --images)")
    if not pairs:
        raise ConfigError(
            f"{where} holds no image (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); fix: check --images"
        )
    pairs.sort(key=lambda t: t[0])
    return ImageSet(root, tuple(n for n, _ in pairs), tuple(p for _, p in pairs))
