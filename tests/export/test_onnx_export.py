"""ONNX export: graph contents, metadata, checker, dynamic batch, and ORT CPU vs eager PyTorch parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fcam_deploy.errors import BackendUnavailableError, ConfigError, InputError, ModelFormatError
from fcam_deploy.export.onnx_export import export_graph, read_onnx_metadata
from fcam_deploy.runtime.base import FORMAT_VERSION, ModelMetadata
from tests._support.models import CLASS_NAMES, MEAN, STD, TAU, model_metadata, ort_ops_library, smooth_images
from tests._support.models import EXPORT_SIZE as SIZE
from tests._support.native import skip_or_fail


def make_meta(method: str, postprocess: str) -> ModelMetadata:
    return model_metadata(method, postprocess, SIZE)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return smooth_images(n, seed)


def _ort(path, lib=None):
    from fcam_deploy.runtime.ort import make_session

    return make_session(path, "cpu", lib, needs_custom_ops=lib is not None)


def _tie_mask(full: np.ndarray, tau: float, atol: float = 1e-4) -> np.ndarray:
    thr = tau * full.reshape(full.shape[0], -1).max(axis=1)[:, None, None]
    return np.abs(full.astype(np.float64) - thr) <= atol


# ------------------------------------------------------------------------------------------- graph in eager mode
def test_in_graph_normalisation_equals_totensor_normalize(make_graph) -> None:
    from torchvision.transforms import functional as tvf

    g = make_graph("cam", "none")
    x = _images(2)
    ours = g.normalize(x)
    ref = torch.stack([tvf.normalize(tvf.to_tensor(img.numpy()), MEAN, STD) for img in x])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "fcam"])
def test_graph_map_equals_compute_maps(make_graph, tiny_models, method: str) -> None:
    """The forward-only graph gives the evaluation code's maps (autograd for the gradient methods)."""
    from fcam_deploy.cams import compute_maps

    clf, fcam = tiny_models
    g = make_graph(method, "onnx")
    x = _images(3, seed=1)
    with torch.no_grad():
        logits, pred, full, mask = g(x)
    ref = compute_maps(fcam if method == "fcam" else clf, g.normalize(x), method)
    torch.testing.assert_close(full, ref.full.float(), rtol=0, atol=1e-5)
    if ref.classes is not None:
        assert torch.equal(pred, ref.classes)
    thr = TAU * full.amax(dim=(1, 2), keepdim=True)
    assert torch.equal(mask, (full > thr).to(torch.uint8))
    assert mask.dtype == torch.uint8 and logits.shape == (3, len(CLASS_NAMES))


def test_graph_rejects_bad_config_and_input(tiny_models) -> None:
    from fcam_deploy.export.graph import LocalizationGraph

    clf, _ = tiny_models
    with pytest.raises(ConfigError, match="F-CAM"):
        LocalizationGraph(clf, "fcam", "onnx", SIZE, MEAN, STD, TAU)
    with pytest.raises(ConfigError, match="method"):
        LocalizationGraph(clf, "scorecam", "onnx", SIZE, MEAN, STD, TAU)
    with pytest.raises(ConfigError, match="tau"):
        LocalizationGraph(clf, "cam", "onnx", SIZE, MEAN, STD, 1.5)
    g = LocalizationGraph(clf, "cam", "onnx", SIZE, MEAN, STD, TAU)
    with pytest.raises(InputError, match="uint8"):
        g(torch.zeros(1, *SIZE, 3))


# -------------------------------------------------------------------------------------------------- export + ORT
@pytest.mark.parametrize(("method", "postprocess"), [("fcam", "onnx"), ("gradcampp", "onnx"), ("layercam", "none")])
def test_export_runs_in_ort_like_torch(exported, make_graph, method: str, postprocess: str) -> None:
    path = exported(method, postprocess)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # standard ops only
    assert [i.name for i in model.graph.input] == ["images"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = read_onnx_metadata(path)
    assert meta == ModelMetadata(**{**make_meta(method, postprocess).__dict__, "opset": 18, "dynamic_batch": True})
    assert [o.name for o in model.graph.output] == list(meta.output_names)
    sess = _ort(path)
    g = make_graph(method, postprocess)
    for n in (1, 5):
        x = _images(n, seed=n)
        got = dict(zip(meta.output_names, sess.run(None, {"images": x.numpy()}), strict=True))
        with torch.no_grad():
            ref = {k: v.numpy() for k, v in zip(meta.output_names, g(x), strict=True)}
        assert got["map"].shape == (n, *SIZE) and got["map"].dtype == np.float32
        assert np.abs(got["map"] - ref["map"]).max() <= 1e-4
        assert np.abs(got["logits"] - ref["logits"]).max() <= 1e-4
        np.testing.assert_array_equal(got["pred_class"], ref["pred_class"])
        if "mask" in ref:
            assert got["mask"].dtype == np.uint8
            differ = got["mask"] != ref["mask"]
            assert not (differ & ~_tie_mask(ref["map"], TAU)).any()


def test_fixed_batch_export(exported) -> None:
    path = exported("cam", "onnx", dynamic_batch=False)
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, *SIZE, 3]
    assert read_onnx_metadata(path).dynamic_batch is False
    sess = _ort(path)
    with pytest.raises(Exception, match="(?i)dimension|shape|index"):
        sess.run(None, {"images": _images(2).numpy()})


def test_custom_op_graph_node_and_standard_twin(exported, make_graph) -> None:
    """One fused fcam::CamPostprocess node with the TensorRT plugin attributes; ORT needs the library."""
    from fcam_deploy.ops import names

    path = exported("cam", "custom-op")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    nodes = [n for n in model.graph.node if n.domain == names.ONNX_DOMAIN]
    assert len(nodes) == 1 and nodes[0].op_type == names.ONNX_OP
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["plugin_namespace"] == b"fcam" and attrs["plugin_version"] == b"1"
    assert attrs[names.ATTR_OUT_H] == SIZE[0] and attrs[names.ATTR_OUT_W] == SIZE[1]
    assert attrs[names.ATTR_MAX_BOXES] == 4 and attrs[names.ATTR_NORMALIZE] == 1
    assert abs(attrs[names.ATTR_TAU] - TAU) < 1e-7
    assert {(o.domain, o.version) for o in model.opset_import} >= {(names.ONNX_DOMAIN, names.ONNX_OPSET_VERSION)}
    assert [o.name for o in model.graph.output] == ["logits", "pred_class", "map", "mask", "boxes", "box_count"]
    lib = ort_ops_library()
    if lib is None:
        from fcam_deploy.runtime.ort import make_session

        with pytest.raises(BackendUnavailableError, match="libfcam_ort_ops"):
            make_session(path, "cpu", None, needs_custom_ops=True)
        skip_or_fail("libfcam_ort_ops.so not built (make kernels): custom-op execution not checked")
    sess = _ort(path, lib)
    std = _ort(exported("cam", "onnx"))
    x = _images(5, seed=3)
    got = dict(zip(read_onnx_metadata(path).output_names, sess.run(None, {"images": x.numpy()}), strict=True))
    ref = dict(zip(("logits", "pred_class", "map", "mask"), std.run(None, {"images": x.numpy()}), strict=True))
    assert np.abs(got["map"] - ref["map"]).max() <= 1e-5
    differ = got["mask"] != ref["mask"]
    assert not (differ & ~_tie_mask(ref["map"], TAU)).any()
    g = make_graph("cam", "custom-op")
    with torch.no_grad():
        eager = [t.numpy() for t in g(x)]
    np.testing.assert_array_equal(got["boxes"], eager[4])
    np.testing.assert_array_equal(got["box_count"], eager[5])


# Element types a TensorRT IPluginV3 may declare for its outputs: NvInferRuntime.h, getOutputDataTypes,
# "DataType::kBOOL and DataType::kUINT8 are not supported" (TensorRT 10.3 ... 11.1 headers).
TRT_PLUGIN_FORBIDDEN_TYPES = {onnx.TensorProto.BOOL, onnx.TensorProto.UINT8}


def test_custom_op_node_outputs_are_tensorrt_plugin_types_and_graph_outputs_are_unchanged(exported) -> None:
    """The node declares no UINT8/BOOL output; a standard Cast alone makes the uint8 ``mask`` graph output."""
    from fcam_deploy.ops import names

    model = onnx.load(str(exported("cam", "custom-op")))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    }
    (node,) = [n for n in model.graph.node if n.domain == names.ONNX_DOMAIN]
    assert len(node.output) == 4
    node_types = [types.get(o) for o in node.output]
    assert None not in node_types, f"untyped custom-node outputs: {dict(zip(node.output, node_types))}"
    assert not TRT_PLUGIN_FORBIDDEN_TYPES & set(node_types), {
        o: onnx.TensorProto.DataType.Name(t) for o, t in zip(node.output, node_types)
    }
    assert node_types == [
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT32,
    ]
    # the runtime contract is unchanged: uint8 mask, int32 boxes/count, made from the node by one Cast
    outs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outs["mask"] == onnx.TensorProto.UINT8 and outs["map"] == onnx.TensorProto.FLOAT
    assert outs["boxes"] == outs["box_count"] == onnx.TensorProto.INT32
    producer = {o: n for n in model.graph.node for o in n.output}
    cast = producer["mask"]
    assert cast.op_type == "Cast" and cast.domain in ("", "ai.onnx") and list(cast.input) == [node.output[1]]
    assert onnx.helper.get_attribute_value(next(a for a in cast.attribute if a.name == "to")) == onnx.TensorProto.UINT8
    # no other graph output is typed UINT8/BOOL by the plugin: each is the node's own output or a standard op's
    for name in ("map", "boxes", "box_count"):
        src = producer[name]
        assert src is node or src.domain in ("", "ai.onnx"), (name, src.op_type)


def test_custom_op_graph_without_library_is_a_typed_error(exported, monkeypatch, tmp_path) -> None:
    from fcam_deploy.runtime.ort import ORT_OPS_ENV, make_session

    path = exported("cam", "custom-op")
    monkeypatch.setenv(ORT_OPS_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(BackendUnavailableError, match="missing.so"):
        make_session(path, "cpu", None, needs_custom_ops=True)


# ---------------------------------------------------------------------------------------------------- metadata
def test_metadata_errors(tmp_path, exported) -> None:
    bogus = tmp_path / "not_onnx.onnx"
    bogus.write_bytes(b"ftrt\x00\x01 this is a TensorRT plan, not ONNX")
    with pytest.raises(ModelFormatError, match="not_onnx"):
        read_onnx_metadata(bogus)
    model = onnx.load(str(exported("fcam", "onnx")))
    props = {p.key: p.value for p in model.metadata_props}
    props["fcam_deploy.format_version"] = str(FORMAT_VERSION + 1)
    with pytest.raises(ModelFormatError, match="version"):
        ModelMetadata.from_props(props)
    plain = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(plain, str(foreign))
    with pytest.raises(ModelFormatError, match="not an fcam-deploy model"):
        read_onnx_metadata(foreign)


def test_export_rejects_bad_opset(make_graph, tmp_path) -> None:
    for opset in (11, 17, 24):
        with pytest.raises(ConfigError, match="opset"):
            export_graph(make_graph("cam", "onnx"), make_meta("cam", "onnx"), tmp_path / "m.onnx", opset=opset)
