"""The ONNX Runtime custom-op library (libfcam_ort_ops.so, node fcam::CamPostprocess) against the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcam_deploy.ops import cam_postprocess_reference, names, ort_library_path
from tests._support.native import needs_native

from ._helpers import assert_same

LIB = ort_library_path()
pytestmark = [
    pytest.mark.ort,
    needs_native(LIB is not None, "libfcam_ort_ops.so not built (run `make kernels`; needs npm headers)"),
]


def _model(oh: int, ow: int, tau: float, q: bool, p: bool, k: int, norm: bool) -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node(
        names.ONNX_OP, ["maps"], ["full", "mask", "boxes", "count"], domain=names.ONNX_DOMAIN,
        **{names.ATTR_OUT_H: oh, names.ATTR_OUT_W: ow, names.ATTR_TAU: tau, names.ATTR_QUANTIZE_UINT8: int(q),
           names.ATTR_PROTOCOL_BOXES: int(p), names.ATTR_MAX_BOXES: k, names.ATTR_NORMALIZE: int(norm),
           "plugin_namespace": names.TRT_PLUGIN_NAMESPACE, "plugin_version": names.TRT_PLUGIN_VERSION},
    )
    graph = helper.make_graph(
        [node], "cam_postprocess",
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", "h", "w"])],
        [helper.make_tensor_value_info("full", TensorProto.FLOAT, ["N", oh, ow]),
         helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", oh, ow]),
         helper.make_tensor_value_info("boxes", TensorProto.INT32, ["N", k, 4]),
         helper.make_tensor_value_info("count", TensorProto.INT32, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(names.ONNX_DOMAIN, names.ONNX_OPSET_VERSION)])
    model.ir_version = 9
    return model.SerializeToString()


def _session(model: bytes, lib: Path = LIB):  # type: ignore[assignment]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    return sess


@pytest.mark.parametrize("flags", [(False, False, True), (True, True, True), (True, False, False), (False, True, True)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3, 7, 9, 3, 2), (2, 28, 28, 224, 224), (4, 5, 3, 17, 31)])
def test_ort_session_equals_reference(shape: tuple[int, ...], flags: tuple[bool, bool, bool]) -> None:
    n, h, w, oh, ow = shape
    q, p, norm = flags
    tau = 0.42  # float32 attribute; the reference gets the same float32 value
    m = np.random.default_rng(sum(shape)).standard_normal((n, h, w)).astype(np.float32)
    if not norm:
        m = (1 / (1 + np.exp(-m))).astype(np.float32)
    sess = _session(_model(oh, ow, tau, q, p, 3, norm))
    got = sess.run(None, {"maps": m})
    ref = cam_postprocess_reference(m, oh, ow, float(np.float32(tau)), q, p, 3, norm)
    from fcam_deploy.ops import PostprocessResult

    assert_same(PostprocessResult(*got), ref)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 30),
       ow=st.integers(1, 30), q=st.booleans(), p=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_ort_hypothesis(n: int, h: int, w: int, oh: int, ow: int, q: bool, p: bool, seed: int) -> None:
    from fcam_deploy.ops import PostprocessResult

    m = np.random.default_rng(seed).standard_normal((n, h, w)).astype(np.float32)
    got = _session(_model(oh, ow, 0.5, q, p, 2, True)).run(None, {"maps": m})
    assert_same(PostprocessResult(*got), cam_postprocess_reference(m, oh, ow, 0.5, q, p, 2, True))


def test_ort_nan_map_gives_zeros_not_a_crash() -> None:
    m = np.ones((2, 4, 4), np.float32)
    m[0, 1, 1] = np.nan
    m[1, 0, 0] = 3.0
    full, _mask, _boxes, count = _session(_model(8, 8, 0.5, False, False, 1, True)).run(None, {"maps": m})
    assert not full[0].any() and count.tolist()[0] == 0 and count.tolist()[1] == 1


def test_ort_invalid_attribute_is_a_clear_error() -> None:
    import onnxruntime as ort

    sess = _session(_model(8, 8, 1.5, False, False, 1, True))
    with pytest.raises((ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail),
                       match="tau in \\[0, 1\\]"):
        sess.run(None, {"maps": np.zeros((1, 2, 2), np.float32)})
