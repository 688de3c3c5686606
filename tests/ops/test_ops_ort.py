"""The ONNX Runtime custom-op library (libfcam_ort_ops.so, node fcam::CamPostprocess) against the reference."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _model(oh: int, ow: int, tau: float, q: bool, p: bool, k: int, norm: bool, version: int | None = None) -> bytes:
    """The node as ``fcam export`` writes it: int32 mask from the node, a standard Cast to the uint8 output."""
    from onnx import TensorProto, helper

    version = names.ONNX_OPSET_VERSION if version is None else version
    legacy = version == 1  # the old contract: uint8 mask straight from the node
    node = helper.make_node(
        names.ONNX_OP,
        ["maps"],
        ["full", "mask" if legacy else "mask_i32", "boxes", "count"],
        domain=names.ONNX_DOMAIN,
        **{
            names.ATTR_OUT_H: oh,
            names.ATTR_OUT_W: ow,
            names.ATTR_TAU: tau,
            names.ATTR_QUANTIZE_UINT8: int(q),
            names.ATTR_PROTOCOL_BOXES: int(p),
            names.ATTR_MAX_BOXES: k,
            names.ATTR_NORMALIZE: int(norm),
            "plugin_namespace": names.TRT_PLUGIN_NAMESPACE,
            "plugin_version": names.TRT_PLUGIN_VERSION,
        },
    )
    nodes = [node] if legacy else [node, helper.make_node("Cast", ["mask_i32"], ["mask"], to=TensorProto.UINT8)]
    graph = helper.make_graph(
        nodes,
        "cam_postprocess",
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", "h", "w"])],
        [
            helper.make_tensor_value_info("full", TensorProto.FLOAT, ["N", oh, ow]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", oh, ow]),
            helper.make_tensor_value_info("boxes", TensorProto.INT32, ["N", k, 4]),
            helper.make_tensor_value_info("count", TensorProto.INT32, ["N"]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(names.ONNX_DOMAIN, version)]
    )
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
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    oh=st.integers(1, 30),
    ow=st.integers(1, 30),
    q=st.booleans(),
    p=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
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
    with pytest.raises(
        (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail),
        match="tau in \\[0, 1\\]",
    ):
        sess.run(None, {"maps": np.zeros((1, 2, 2), np.float32)})


def test_ort_node_mask_output_is_int32() -> None:
    """The node itself (no Cast) outputs int32 0/1 equal to the reference mask (the ORT/TensorRT contract)."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        names.ONNX_OP,
        ["maps"],
        ["full", "mask_i32", "boxes", "count"],
        domain=names.ONNX_DOMAIN,
        **{names.ATTR_OUT_H: 9, names.ATTR_OUT_W: 7, names.ATTR_TAU: 0.5},
    )
    graph = helper.make_graph(
        [node],
        "node_only",
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", "h", "w"])],
        [
            helper.make_tensor_value_info("full", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("mask_i32", TensorProto.INT32, None),
            helper.make_tensor_value_info("boxes", TensorProto.INT32, None),
            helper.make_tensor_value_info("count", TensorProto.INT32, None),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(names.ONNX_DOMAIN, names.ONNX_OPSET_VERSION)],
    )
    model.ir_version = 9
    m = np.random.default_rng(3).standard_normal((2, 4, 5)).astype(np.float32)
    full, mask, boxes, count = _session(model.SerializeToString()).run(None, {"maps": m})
    ref = cam_postprocess_reference(m, 9, 7, 0.5)
    assert mask.dtype == np.int32 and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, ref.mask.astype(np.int32))
    np.testing.assert_array_equal(full.view(np.uint32), ref.full.view(np.uint32))
    np.testing.assert_array_equal(boxes, ref.boxes)
    np.testing.assert_array_equal(count, ref.count)


def test_ort_version_1_graph_is_refused_with_the_op_version() -> None:
    """A graph of the old contract (node version 1, uint8 mask) is not run with the int32 kernel."""
    with pytest.raises(Exception, match=r"CamPostprocess\(-?\d+\) is not a registered"):
        _session(_model(8, 8, 0.5, False, False, 1, True, version=1))


# Comma-separated PYTHONPATH values, one per onnxruntime release (each may hold several folders joined by ':').
_OLD_ORT = [p for p in os.environ.get("FCAM_OLD_ORT_DIRS", "").split(",") if p]


@pytest.mark.skipif(
    not _OLD_ORT,
    reason="set FCAM_OLD_ORT_DIRS to `pip install --target` folders of older onnxruntime "
    "releases (command in kernels/README.md, section 5)",
)
def test_library_with_older_onnxruntime_releases(tmp_path: Path) -> None:
    """The library built against the API-29 headers runs on older releases (>= 1.17) and refuses 1.16 cleanly.

    Each entry is a PYTHONPATH with one onnxruntime release (and numpy 1.26 for releases built against NumPy 1);
    the session runs in a subprocess so that a crash is a failure of this test, not of pytest.
    """
    model = tmp_path / "node.onnx"
    model.write_bytes(_model(9, 7, 0.5, False, True, 3, True))
    m = np.random.default_rng(5).standard_normal((3, 4, 5)).astype(np.float32)
    ref = cam_postprocess_reference(m, 9, 7, float(np.float32(0.5)), False, True, 3, True)
    np.savez(tmp_path / "ref.npz", maps=m, full=ref.full, mask=ref.mask, boxes=ref.boxes, count=ref.count)
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "so = ort.SessionOptions()\n"
        "try:\n"
        "    so.register_custom_ops_library(sys.argv[1])\n"
        "except Exception as e:\n"
        "    print('REFUSED', ort.__version__, ort.__file__, e); sys.exit(0)\n"
        "s = ort.InferenceSession(sys.argv[2], so, providers=['CPUExecutionProvider'])\n"
        "r = np.load(sys.argv[3])\n"
        "got = s.run(None, {'maps': r['maps']})\n"
        "ok = all(np.array_equal(a, r[k]) for a, k in zip(got, ['full', 'mask', 'boxes', 'count']))\n"
        "print('RAN', ort.__version__, ort.__file__, ok)\n"
    )
    for folder in _OLD_ORT:
        env = dict(os.environ, PYTHONPATH=folder)
        proc = subprocess.run(
            [sys.executable, "-c", script, str(LIB), str(model), str(tmp_path / "ref.npz")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, f"{folder}: exit {proc.returncode}\n{proc.stdout}{proc.stderr[-2000:]}"
        words = proc.stdout.split()
        assert any(words[2].startswith(d) for d in folder.split(":")), f"{folder}: imported {words[2]}"
        version = tuple(int(v) for v in words[1].split(".")[:2])
        if version < (1, 17):
            assert words[0] == "REFUSED" and "needs ONNX Runtime >= 1.17" in proc.stdout, proc.stdout
        else:
            assert words[0] == "RAN" and words[3] == "True", proc.stdout
