"""The matplotlib-free overlay: the jet table equals matplotlib's colormap, the blend and boxes are drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fcam_deploy.runtime.localizer import Box, Prediction
from fcam_deploy.runtime.overlay import jet_lut, render_overlay


def test_jet_table_equals_matplotlib() -> None:
    import matplotlib

    cmap = matplotlib.colormaps["jet"]
    np.testing.assert_array_equal(jet_lut(), (cmap(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8))
    v = np.random.default_rng(0).random(50_000).astype(np.float32)
    v[:3] = (0.0, 1.0, np.nextafter(np.float32(1), np.float32(0)))
    idx = np.minimum((v * 256).astype(np.intp), 255)
    np.testing.assert_array_equal(jet_lut()[idx], (cmap(v)[:, :3] * 255).astype(np.uint8))


def _pred(m: np.ndarray, boxes: tuple[Box, ...]) -> Prediction:
    return Prediction(
        class_index=0,
        class_name="bird",
        score=0.9,
        logits=np.zeros(1, np.float32),
        map=m,
        mask=m > 0.5,
        boxes=boxes,
        tau=0.5,
        size=m.shape,
        backend="onnxruntime",
    )


def test_overlay_blends_the_map_and_draws_boxes() -> None:
    h, w = 60, 80
    m = np.zeros((h, w), np.float32)
    m[20:40, 30:60] = 1.0
    img = Image.fromarray(np.full((h, w, 3), 100, np.uint8))
    out = np.asarray(render_overlay(img, _pred(m, (Box(30, 20, 59, 39),)), alpha=0.5))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    lut = jet_lut()
    # away from the text and the box outline: (base + heat) / 2 with the map's colour
    np.testing.assert_allclose(out[50, 10].astype(int), (100 + lut[0].astype(int)) // 2, atol=1)
    np.testing.assert_allclose(out[30, 45].astype(int), (100 + lut[255].astype(int)) // 2, atol=1)
    assert tuple(out[20, 40]) == (0, 255, 0)  # the box outline
    plain = np.asarray(render_overlay(img, _pred(m, ()), alpha=0.0))
    assert (plain[30:, :] == 100).all()  # alpha 0 and no boxes: the image itself (below the caption)
