"""Checkpoint (torch) vs exported graph (ORT) through Localizer.load, the custom-op graph, and `fcam predict`."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from fcam_deploy.cli import main
from fcam_deploy.runtime import Localizer
from tests._support.models import CLASS_NAMES, blob_image
from tests._support.models import RUNTIME_SIZE as SIZE
from tests._support.native import skip_or_fail


def _own_map_boxes(p) -> list[tuple[int, int, int, int]]:  # type: ignore[no-untyped-def]
    """Independent check of a prediction's boxes: the NumPy reference op (scipy components) on the prediction's
    own original-size map (identity resize, ``map > tau * max``)."""
    from fcam_deploy.ops import cam_postprocess_reference

    h, w = p.map.shape
    ref = cam_postprocess_reference(p.map[None], h, w, p.tau, max_boxes=8, normalize=False)
    np.testing.assert_array_equal(p.mask, ref.mask[0])
    return [tuple(int(v) for v in row) for row in ref.boxes[0, : int(ref.count[0])]]


def test_checkpoint_and_onnx_backends_agree(checkpoint_dir, onnx_model) -> None:
    torch_loc = Localizer.load(checkpoint_dir)  # auto -> torch
    ort_loc = Localizer.load(onnx_model("fcam", "onnx"), backend="onnxruntime")
    assert torch_loc.backend == "torch" and torch_loc.metadata.method == "fcam"
    assert torch_loc.metadata.class_names == CLASS_NAMES
    images = [blob_image(64, 48, 11), blob_image(*SIZE, 12), blob_image(23, 91, 13)]
    n_boxes = 0
    for a, b in zip(torch_loc.predict(images), ort_loc.predict(images), strict=True):
        assert a.class_index == b.class_index
        assert np.abs(a.map - b.map).max() <= 1e-4
        assert a.boxes == b.boxes
        # the boxes are the map's components, not just equal on both backends (both could drop them alike)
        assert [tuple(x) for x in b.boxes] == _own_map_boxes(b)
        n_boxes += len(b.boxes)
    assert n_boxes >= len(images)  # not vacuous: every image has at least one box


def test_checkpoint_baseline_method_on_torch(checkpoint_dir) -> None:
    loc = Localizer.load(checkpoint_dir, backend="torch", method="gradcampp")
    assert loc.metadata.method == "gradcampp"
    p = loc.predict(blob_image(50, 50, 1))
    assert p.map.shape == (50, 50) and 0.0 <= p.map.min() <= p.map.max() <= 1.0


def test_custom_op_graph_boxes_equal_the_reference(onnx_model) -> None:
    """The fused node's boxes are the reference op's boxes on the graph's own map; through the Localizer a
    custom-op graph and a standard one predict the same thing (the runtime post-processes the map natively)."""
    from fcam_deploy.ops import cam_postprocess_reference, ort_library_path

    lib = ort_library_path()
    if lib is None:
        skip_or_fail("libfcam_ort_ops.so not built (make kernels)")
    custom = Localizer.load(onnx_model("cam", "custom-op"), plugin_library=lib)
    standard = Localizer.load(onnx_model("cam", "onnx"))
    k_max = custom.metadata.max_boxes
    for k in range(4):
        img = blob_image(*SIZE, 20 + k)
        raw = custom.runner.run(img[None])
        ref = cam_postprocess_reference(
            raw["map"], SIZE[0], SIZE[1], custom.metadata.tau, max_boxes=k_max, normalize=False
        )
        np.testing.assert_array_equal(raw["mask"][0], ref.mask[0])
        assert int(raw["box_count"][0]) == int(ref.count[0])
        np.testing.assert_array_equal(raw["boxes"][0], ref.boxes[0])
        a, b = custom.predict(img), standard.predict(img)
        assert a.class_index == b.class_index and np.abs(a.map - b.map).max() <= 1e-5
        assert a.boxes == b.boxes


def test_predict_cli_writes_overlays_and_json(tmp_path, onnx_model, capsys) -> None:
    paths = []
    for k, (h, w) in enumerate([(60, 80), (33, 47)]):
        p = tmp_path / f"img{k}.png"
        Image.fromarray(blob_image(h, w, k)).save(p)
        paths.append(p)
    out = tmp_path / "out"
    model = onnx_model("fcam", "onnx")
    assert main(["predict", str(model), *map(str, paths), "--out", str(out)]) == 0
    loc = Localizer.load(model)
    for p in paths:
        record = json.loads((out / f"{p.stem}.json").read_text())
        ref = loc.predict(Image.open(p).convert("RGB"))
        assert record["class_name"] == ref.class_name and record["boxes"] == [list(b) for b in ref.boxes]
        assert record["boxes"] and [tuple(b) for b in record["boxes"]] == _own_map_boxes(ref)
        assert record["providers"] == ["CPUExecutionProvider"] and record["fell_back_to_cpu"] is False
        overlay = Image.open(out / f"{p.stem}.png")
        assert overlay.size == Image.open(p).size and overlay.mode == "RGB"
        assert not np.array_equal(np.asarray(overlay), np.asarray(Image.open(p).convert("RGB")))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["backend"] == "onnxruntime" and len(summary["predictions"]) == 2


def test_predict_cli_bad_image_is_a_typed_error(tmp_path, onnx_model, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["predict", str(onnx_model("fcam", "onnx")), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "fcam predict: error:" in capsys.readouterr().err
