"""Hostile and broken files for the reliability tests, written without ever holding what they declare in memory."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["jpeg_with_size", "npy_header_only", "png_gray1", "snapshot", "truncated_copy"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_gray1(path: Path, width: int, height: int) -> Path:
    """A valid, complete 1-bit greyscale PNG of ``width x height`` black pixels, compressed row by row (a 30000 x
    30000 image is ~0.1 MB on disk and never exists in memory here)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte 0 + packed zero bits
    comp = zlib.compressobj(9)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        block = row * 256
        done = 0
        while done < height:
            n = min(256, height - done)
            data = comp.compress(block if n == 256 else row * n)
            if data:
                fh.write(_chunk(b"IDAT", data))
            done += n
        fh.write(_chunk(b"IDAT", comp.flush()))
        fh.write(_chunk(b"IEND", b""))
    return path


def jpeg_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny real JPEG whose SOF header is patched to declare ``width x height`` (a decompression bomb header)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buf, format="JPEG", quality=80)
    data = bytearray(buf.getvalue())
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        pos = data.find(marker)
        if pos >= 0:
            struct.pack_into(">HH", data, pos + 5, height, width)
            break
    else:  # pragma: no cover
        raise AssertionError("no SOF marker in the JPEG Pillow wrote")
    path.write_bytes(bytes(data))
    return path


def npy_header_only(path: Path, shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"\x00" * 64) -> Path:
    """A ``.npy`` whose header declares ``shape`` followed by only ``payload`` bytes (the header lies)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
        fh.write(payload)
    return path


def truncated_copy(src: Path, dst: Path, keep: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * keep))])
    return dst


def snapshot(*roots: Path) -> dict[str, tuple[int, int, int, str]]:
    """(size, mtime_ns, mode, sha256 or '') of every file under ``roots`` (digests for files up to 1 MB)."""
    import hashlib

    out: dict[str, tuple[int, int, int, str]] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
        for p in paths:
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and st.st_size <= 1 << 20 else ""
            out[str(p)] = (st.st_size, st.st_mtime_ns, st.st_mode, digest)
    return out
