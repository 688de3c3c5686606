"""INT8 quantization (ORT static QDQ): the graph's contract is kept, only Conv/MatMul/Gemm are quantized, the
maps stay close to fp32 on the calibration distribution, bad inputs give typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from fcam_deploy.errors import ConfigError, InputError, ModelFormatError
from fcam_deploy.export.quantize import quantize_int8
from fcam_deploy.runtime import Localizer
from tests._support.models import EXPORT_SIZE as SIZE
from tests._support.models import smooth_images


@pytest.fixture(scope="module")
def int8_model(exported, tmp_path_factory):
    src = exported("fcam", "onnx")
    dst = tmp_path_factory.mktemp("q8") / "fcam-int8.onnx"
    calib = [smooth_images(8, seed=s).numpy() for s in range(4)]
    meta = quantize_int8(src, dst, calib)
    return src, dst, meta


def test_int8_graph_keeps_the_contract(int8_model) -> None:
    import onnx

    src, dst, meta = int8_model
    assert meta.extra["precision"] == "int8" and meta.extra["calibration_images"] == "32"
    model = onnx.load(str(dst))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ref = onnx.load(str(src))
    assert [o.name for o in model.graph.output] == [o.name for o in ref.graph.output]
    assert [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] == [
        (i.name, i.type.tensor_type.elem_type) for i in ref.graph.input
    ]
    # weights: every Conv/Gemm weight is an int8 initializer behind a DequantizeLinear; nothing else has int8
    # weights (the normalisation, softmax, argmax, map normalisation stay fp32)
    int8_inits = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    producer = {o: n for n in model.graph.node for o in n.output}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert weighted
    for n in weighted:
        dq = producer.get(n.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in int8_inits, n.name
    weight_users = {producer[n.input[1]].output[0] for n in weighted}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in int8_inits:
            assert n.output[0] in weight_users, n.name
    props = {p.key: p.value for p in model.metadata_props}
    assert props["fcam_deploy.precision"] == "int8" and props["fcam_deploy.method"] == "fcam"


def test_int8_maps_follow_fp32(int8_model) -> None:
    src, dst, _ = int8_model
    fp32, int8 = Localizer.load(src, threads=1), Localizer.load(dst, threads=1)
    images = list(smooth_images(6, seed=11).numpy())
    a, b = fp32.predict(images), int8.predict(images)
    for pa, pb in zip(a, b, strict=True):
        assert pa.map.shape == pb.map.shape == SIZE
        corr = np.corrcoef(pa.map.ravel(), pb.map.ravel())[0, 1]
        assert corr > 0.95, corr  # quantisation noise, not a different map
        assert np.abs(pa.map - pb.map).mean() < 0.05
    assert sum(pa.class_index == pb.class_index for pa, pb in zip(a, b, strict=True)) >= 5


def test_quantize_errors(exported, int8_model, tmp_path) -> None:
    src, dst, _ = int8_model
    with pytest.raises(InputError, match="uint8"):
        quantize_int8(src, tmp_path / "x.onnx", np.zeros((2, *SIZE, 3), np.float32))
    with pytest.raises(InputError, match=r"\(n, 48, 48, 3\)"):
        quantize_int8(src, tmp_path / "x.onnx", np.zeros((2, 10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="no calibration images"):
        quantize_int8(src, tmp_path / "x.onnx", [])
    with pytest.raises(ConfigError, match="calibration method"):
        quantize_int8(src, tmp_path / "x.onnx", smooth_images(2).numpy(), method="kl")
    with pytest.raises(ModelFormatError, match="already int8"):
        quantize_int8(dst, tmp_path / "x.onnx", smooth_images(2).numpy())
    with pytest.raises(ModelFormatError, match="custom"):
        quantize_int8(exported("cam", "custom-op"), tmp_path / "x.onnx", smooth_images(2).numpy())
    assert not (tmp_path / "x.onnx").exists()


def test_fcam_quantize_cli(exported, tmp_path, capsys) -> None:
    import json

    from fcam_deploy.cli import main
    from fcam_deploy.data import SynthConfig, generate_synthetic

    data = tmp_path / "data"
    generate_synthetic(data, SynthConfig(size=48, num_classes=3), counts={"train": 12}, seed=5, overwrite=True)
    out = tmp_path / "int8.onnx"
    assert (
        main(["quantize", str(exported("cam", "none")), "--data", str(data), "--images", "10", "--out", str(out)]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["calibration_images"] == 10 and summary["calibration_split"] == "train"
    assert Localizer.load(out).metadata.extra["precision"] == "int8"
    assert (
        main(
            [
                "quantize",
                str(exported("cam", "none")),
                "--data",
                str(data),
                "--split",
                "test",
                "--out",
                str(tmp_path / "leak.onnx"),
            ]
        )
        == 2
    )
    assert "test split" in capsys.readouterr().err and not (tmp_path / "leak.onnx").exists()
