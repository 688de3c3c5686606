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

__all__ = ["jet_lut", "render_overlay"]

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


def render_overlay(image: Any, pred: Any, alpha: float = 0.5) -> Any:
    """RGB PIL image: ``image`` blended with the jet-coloured map, boxes drawn in green, class and score written.

    Args:
        image: PIL image (any mode; converted to RGB) of size ``(w, h) = pred.size[::-1]``.
        pred: a :class:`fcam_deploy.runtime.Prediction` (``map`` float32 ``(h, w)`` in [0, 1]).
        alpha: heatmap opacity in [0, 1].
    """
    from PIL import Image, ImageDraw

    lut = jet_lut()
    # the colormap's own indexing: floor(v * N), v == 1 -> N - 1
    idx = np.minimum((np.clip(pred.map, 0.0, 1.0) * len(lut)).astype(np.intp), len(lut) - 1)
    base = np.asarray(image.convert("RGB"), dtype=np.uint8)
    heat = lut[idx]
    a = int(round(float(alpha) * 256))
    blend = ((base.astype(np.uint16) * (256 - a) + heat.astype(np.uint16) * a) >> 8).astype(np.uint8)
    out = Image.fromarray(blend, mode="RGB")
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(pred.size) / 150))
    for b in pred.boxes:
        draw.rectangle((b.x0, b.y0, b.x1, b.y1), outline=(0, 255, 0), width=width)
    draw.text((3, 3), f"{pred.class_name} {pred.score:.2f}", fill=(255, 255, 255))
    return out
