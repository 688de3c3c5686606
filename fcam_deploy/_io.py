"""Atomic file writes: the one helper every writer of the package uses (no half-written file is ever read).

``with atomic_path(dst) as tmp:`` yields a temporary path next to ``dst``; write it completely; on a clean exit
the file is fsync'ed, given the mode a plain ``open(dst, "w")`` would get (0o666 minus the umask, not mkstemp's
0o600), renamed over ``dst`` and the directory entry is fsync'ed. On an exception the temporary file is removed
and ``dst`` is left as it was.

A process killed with SIGKILL cannot remove its temporary file. Temporary names therefore carry the writer's
process id (``.<name>.<pid>.<random>.tmp``), and the next write of the same ``dst`` removes the temporary files
of writers that no longer run (:func:`remove_stale_temporaries`); files of live writers are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "pid_alive",
    "remove_stale_temporaries",
]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # fallback: read by setting (the value is restored at once)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # cannot tell: keep its files
    return True


_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temporaries(dst: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.<dst name>.<pid>.*.tmp`` files next to ``dst`` whose writer process is gone; returns them."""
    dst = Path(dst)
    removed: list[Path] = []
    try:
        entries = list(dst.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or m.group("name") != dst.name or pid_alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            entry.unlink()
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str]) -> Iterator[Path]:
    """Context manager yielding a temporary path in ``dst``'s directory that replaces ``dst`` on success.

    Raises:
        IsADirectoryError: ``dst`` is an existing directory (nothing is written).
    """
    dst = Path(dst)
    if dst.is_dir():
        raise IsADirectoryError(f"{dst} is a directory; give a file path")
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(dst: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dst`` atomically (see :func:`atomic_path`); returns ``dst``."""
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def atomic_write_text(dst: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``dst`` atomically (see :func:`atomic_path`); returns ``dst``."""
    return atomic_write_bytes(dst, text.encode("utf-8"))
