"""Overlay of a :class:`~fcam_deploy.runtime.Prediction` on its image (what ``fcam predict`` writes), torch- and
matplotlib-free.

The map is coloured with matplotlib's ``jet`` colormap, rebuilt here as the same 256-entry lookup table from its
public segment definition (linear segments per channel; ``tests/runtime`` checks the table against matplotlib),
so the lean install needs neither matplotlib nor float RGBA images: memory is a few bytes per pixel.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["annotate", "blend_map", "jet_lut", "render_overlay"]

# matplotlib's ``jet`` (matplotlib/_cm.py ``_jet_data``): (x, value) knots per channel, linear in between.
_JET_KNOTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


@functools.cache
def jet_lut(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 RGB table of the jet colormap: entry ``i`` is the colour at ``i / (n - 1)``."""
    x = np.linspace(0.0, 1.0, n)
    cols = []
    for ch in ("red", "green", "blue"):
        knots = np.asarray(_JET_KNOTS[ch])
        cols.append(np.interp(x, knots[:, 0], knots[:, 1]))
    lut = (np.stack(cols, axis=1) * 255.0).astype(np.uint8)  # truncation, as matplotlib's `(rgba * 255).astype`
    lut.setflags(write=False)
    return lut


#: Pixels blended per step: the temporaries of :func:`blend_map` stay at ~20 bytes x this, whatever the image size.
_BLOCK_PIXELS = 1 << 20


def blend_map(rgb: np.ndarray, heat_map: np.ndarray, alpha: float, out: np.ndarray | None = None) -> np.ndarray:
    """Blend the jet-coloured ``heat_map`` over ``rgb``: ``(rgb * (256 - a) + jet(map) * a) >> 8``, ``a =
    round(alpha * 256)``, computed in row blocks of about a megapixel (bounded extra memory at any image size).

    Args:
        rgb: uint8 ``(h, w, 3)``.
        heat_map: float ``(h, w)`` in [0, 1] (clipped).
        alpha: heatmap opacity in [0, 1].
        out: uint8 ``(h, w, 3)`` to write into (may be ``rgb`` itself); a new array when None.

    Raises:
        InputError: shapes or dtypes that do not fit, ``alpha`` outside [0, 1] or not finite.
    """
    from fcam_deploy.errors import InputError

    if not (isinstance(alpha, (int, float)) and 0.0 <= float(alpha) <= 1.0):
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or heat_map.shape != rgb.shape[:2]:
        raise InputError(
            f"blend_map needs uint8 (h, w, 3) and a (h, w) map, got {rgb.dtype} {rgb.shape} and {heat_map.shape}"
        )
    if out is None:
        out = np.empty_like(rgb)
    lut = jet_lut()
    n = len(lut)
    a = round(float(alpha) * 256)
    h, w = heat_map.shape
    step = max(1, _BLOCK_PIXELS // max(w, 1))
    for r0 in range(0, h, step):
        rows = slice(r0, min(h, r0 + step))
        # the colormap's own indexing: floor(v * N), v == 1 -> N - 1
        idx = np.minimum((np.clip(heat_map[rows], 0.0, 1.0) * n).astype(np.intp), n - 1)
        heat = lut[idx].astype(np.uint16)
        heat *= a
        base = rgb[rows].astype(np.uint16)
        base *= 256 - a
        base += heat
        base >>= 8
        out[rows] = base
    return out


def annotate(image: Any, boxes: Any, caption: str) -> Any:
    """Draw ``boxes`` (``(x0, y0, x1, y1)`` inclusive) in green and ``caption`` in white on an RGB PIL image, in
    place; returns it."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    width = max(1, round(min(image.size) / 150))
    for b in boxes:
        draw.rectangle((b[0], b[1], b[2], b[3]), outline=(0, 255, 0), width=width)
    draw.text((3, 3), caption, fill=(255, 255, 255))
    return image


def render_overlay(image: Any, pred: Any, alpha: float = 0.5) -> Any:
    """RGB PIL image: ``image`` blended with the jet-coloured map, boxes drawn in green, class and score written.

    Args:
        image: PIL image (any mode; converted to RGB) or uint8 ``(h, w, 3)`` RGB array, of size
            ``(w, h) = pred.size[::-1]``.
        pred: a :class:`fcam_deploy.runtime.Prediction` (``map`` float32 ``(h, w)`` in [0, 1]).
        alpha: heatmap opacity in [0, 1].

    Memory: the result plus about 20 MB of temporaries (:func:`blend_map`), at any image size.
    """
    from PIL import Image

    base = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"), dtype=np.uint8)
    out = Image.fromarray(blend_map(base, pred.map, alpha))
    return annotate(out, pred.boxes, f"{pred.class_name} {pred.score:.2f}")
