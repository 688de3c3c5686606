"""torch.ops.fcam.cam_postprocess (C++ CPU launcher) and the public wrapper against the NumPy reference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fcam_deploy.ops.torch_op  # noqa: F401 - registers the torch op's Python side
from fcam_deploy import ops
from fcam_deploy.errors import InputError
from fcam_deploy.ops import NativeStatus, cam_postprocess, cam_postprocess_reference, native_status
from tests._support.native import needs_native

from ._helpers import assert_same, protocol_boxes_cv2

needs_ext = needs_native(native_status().available, f"torch extension: {native_status().reason}")


def _op(m: np.ndarray, *args: object) -> tuple[torch.Tensor, ...]:
    return torch.ops.fcam.cam_postprocess(torch.from_numpy(m), *args)


def _flags() -> list[tuple[bool, bool, bool]]:
    return [(q, p, n) for q in (False, True) for p in (False, True) for n in (True, False)]


@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 1, 1, 1),
        (2, 1, 1, 9, 4),
        (3, 7, 9, 3, 2),
        (2, 28, 28, 224, 224),
        (4, 5, 3, 17, 31),
        (1, 13, 1, 1, 13),
        (0, 4, 4, 8, 8),
    ],
)
@pytest.mark.parametrize("flags", _flags())
def test_op_matches_reference_on_shapes(shape: tuple[int, ...], flags: tuple[bool, bool, bool]) -> None:
    n, h, w, oh, ow = shape
    q, p, norm = flags
    m = np.random.default_rng(sum(shape)).standard_normal((n, h, w)).astype(np.float32)
    if not norm:
        m = 1 / (1 + np.exp(-m)).astype(np.float32)
    got = _op(m, oh, ow, 0.37, q, p, 4, norm)
    assert_same(ops.PostprocessResult(*got), cam_postprocess_reference(m, oh, ow, 0.37, q, p, 4, norm))


@needs_ext
@pytest.mark.parametrize("value", [0.0, -3.5, 1e30])
def test_constant_map_gives_zeros(value: float) -> None:
    m = np.full((2, 5, 6), value, np.float32)
    for q, p, norm in _flags():
        full, mask, boxes, count = _op(m, 11, 7, 0.5, q, p, 3, norm)
        ref = cam_postprocess_reference(m, 11, 7, 0.5, q, p, 3, norm)
        assert_same(ops.PostprocessResult(full, mask, boxes, count), ref)
        if norm:
            assert not full.any() and not mask.any()
            assert count.tolist() == ([1, 1] if p else [0, 0])


@needs_ext
def test_nan_and_inf_give_zeros_in_the_op_and_input_error_in_the_wrapper() -> None:
    m = np.random.default_rng(1).random((3, 4, 4)).astype(np.float32)
    m[1, 2, 2] = np.nan
    m[2, 0, 0] = np.inf
    full, mask, _boxes, count = _op(m, 8, 8, 0.5, False, False, 2, True)
    assert not full[1:].any() and not mask[1:].any() and count[1:].tolist() == [0, 0]
    assert full[0].max() > 0.5
    with pytest.raises(InputError, match=r"NaN or inf.*nan_to_num"):
        cam_postprocess(torch.from_numpy(m), 8, 8, 0.5)


@needs_ext
@pytest.mark.parametrize("shape", [(1, 4, 4, 4, 4), (2, 5, 7, 5, 7), (3, 6, 5, 23, 17), (2, 9, 9, 4, 3)])
def test_negative_zero_is_plus_zero_in_full_and_does_not_win_the_max(shape: tuple[int, ...]) -> None:
    """F-CAM-style maps (normalize=False) with -0.0 from torch.relu: the threshold uses the real maximum."""
    n, h, w, oh, ow = shape
    rng = np.random.default_rng(sum(shape))
    x = torch.from_numpy(rng.standard_normal((n, h, w)).astype(np.float32))
    m = torch.relu(torch.where(x > 0, x / (1 + x), torch.full_like(x, -0.0))).numpy()
    assert np.signbit(m[m == 0]).all() and (m > 0).any()  # the input really carries -0.0
    for q, p in [(False, False), (True, True), (True, False)]:
        got = _op(m, oh, ow, 0.5, q, p, 4, False)
        ref = cam_postprocess_reference(m, oh, ow, 0.5, q, p, 4, False)
        assert_same(ops.PostprocessResult(*got), ref)
        full = got[0].numpy()
        assert not np.signbit(full).any(), "-0.0 reached full"
        # independent threshold: mask = full > tau * max(full) (float path), computed per map here
        if not q:
            thr = np.float32(0.5) * full.reshape(n, -1).max(axis=1)
            np.testing.assert_array_equal(got[1].numpy(), (full > thr[:, None, None]).astype(np.uint8))
        assert not got[1].numpy().all()  # a -0.0 maximum would put every positive pixel in the mask


@needs_ext
def test_all_above_and_all_below() -> None:
    ramp = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4)
    # probabilities, all > 0: tau = 0 keeps every pixel -> one component covering the image
    _, mask, boxes, count = _op(ramp / 20, 9, 10, 0.0, False, False, 2, False)
    assert mask.all() and count.item() == 1 and boxes[0, 0].tolist() == [0, 0, 9, 8]
    _, mask, boxes, count = _op(ramp / 20, 9, 10, 0.0, False, True, 2, False)
    assert boxes[0, 0].tolist() == [0, 0, 9, 8]  # protocol +1 overshoot clipped at the border
    # tau = 1: nothing is strictly above the max
    _full, mask, boxes, count = _op(ramp, 9, 10, 1.0, True, False, 2, True)
    assert not mask.any() and count.item() == 0 and (boxes == -1).all()


@needs_ext
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    oh=st.integers(1, 33),
    ow=st.integers(1, 33),
    tau=st.one_of(st.floats(0.0, 1.0), st.sampled_from(np.arange(0, 1, 0.01).tolist())),
    q=st.booleans(),
    p=st.booleans(),
    norm=st.booleans(),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["normal", "binary", "plateau", "relu"]),
)
def test_op_matches_reference_hypothesis(
    n: int, h: int, w: int, oh: int, ow: int, tau: float, q: bool, p: bool, norm: bool, k: int, seed: int, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        m = rng.standard_normal((n, h, w)).astype(np.float32)
    elif kind == "binary":
        m = (rng.random((n, h, w)) < 0.5).astype(np.float32)
    elif kind == "plateau":
        m = np.round(rng.random((n, h, w)) * 3).astype(np.float32) / 3
    else:  # probability-like maps with -0.0 where they are zero (torch.relu(-0.0) is -0.0)
        x = rng.standard_normal((n, h, w)).astype(np.float32)
        m = np.where(x > 0, x / (1 + x), np.float32(-0.0)).astype(np.float32)
    if not norm and kind != "relu":
        m = np.clip(m, -0.5, 1.5)
    got = _op(m, oh, ow, tau, q, p, k, norm)
    assert_same(ops.PostprocessResult(*got), cam_postprocess_reference(m, oh, ow, tau, q, p, k, norm))


@needs_ext
@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 24), w=st.integers(1, 24), dens=st.floats(0.2, 0.9))
def test_contour_tracer_matches_cv2_on_binary_masks(seed: int, h: int, w: int, dens: float) -> None:
    # Identity resize of a 0/1 map: the mask is the map; holes, nesting, thin lines and single pixels stress the
    # C++ border follower against cv2.findContours / cv2.contourArea (the protocol's v1 box) directly.
    m = (np.random.default_rng(seed).random((1, h, w)) < dens).astype(np.float32)
    full, mask, boxes, count = _op(m, h, w, 0.5, True, True, h * w, True)
    v1, th, outer = protocol_boxes_cv2(full[0].numpy(), 0.5)
    np.testing.assert_array_equal(mask[0].numpy(), (th > 0).astype(np.uint8))
    assert boxes[0, 0].tolist() == v1
    if outer:
        assert sorted(boxes[0, : count[0]].tolist()) == sorted(outer)


@needs_ext
def test_opcheck() -> None:
    m = torch.randn(3, 7, 5)
    for args in [
        (14, 10, 0.5, False, False, 3, True),
        (4, 4, 0.2, True, True, 1, True),
        (7, 5, 0.9, True, False, 2, False),
    ]:
        torch.library.opcheck(torch.ops.fcam.cam_postprocess.default, (m, *args))


@needs_ext
def test_torch_export_sees_output_shapes() -> None:
    mod = ops.CamPostprocess(32, 24, 0.5, max_boxes=5)
    ep = torch.export.export(mod, (torch.randn(2, 7, 7),))
    shapes = [tuple(v.meta["val"].shape) for v in ep.graph.output_node().args[0]]
    dtypes = [v.meta["val"].dtype for v in ep.graph.output_node().args[0]]
    assert shapes == [(2, 32, 24), (2, 32, 24), (2, 5, 4), (2,)]
    assert dtypes == [torch.float32, torch.uint8, torch.int32, torch.int32]
    assert any("fcam.cam_postprocess" in str(node.target) for node in ep.graph.nodes)


@needs_ext
def test_wrapper_uses_op_and_converts_dtype() -> None:
    m = torch.randn(2, 6, 6, dtype=torch.float64)
    r = cam_postprocess(m, 12, 12, 0.4, max_boxes=3)
    ref = cam_postprocess_reference(m.float().numpy(), 12, 12, 0.4, max_boxes=3)
    assert_same(r, ref)


def test_wrapper_falls_back_to_reference_and_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ops.torch_op, "native_status", lambda: NativeStatus(False, "test: extension hidden", False))
    ops.torch_op.log_fallback_once.cache_clear()
    m = torch.randn(2, 5, 5)
    with caplog.at_level(logging.WARNING, logger="fcam_deploy.ops"):
        r1 = cam_postprocess(m, 9, 9, 0.5, max_boxes=2)
        cam_postprocess(m, 9, 9, 0.5, max_boxes=2)
    assert [rec.getMessage() for rec in caplog.records].count(
        "fcam_deploy.ops.cam_postprocess: using the NumPy reference (test: extension hidden)"
    ) == 1
    assert_same(r1, cam_postprocess_reference(m.numpy(), 9, 9, 0.5, max_boxes=2))
    ops.torch_op.log_fallback_once.cache_clear()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maps": torch.zeros(3, 3)}, r"\(N, h, w\)"),
        ({"maps": torch.zeros(1, 3, 3, dtype=torch.int32)}, "floating point"),
        ({"maps": np.zeros((1, 3, 3))}, "torch.Tensor"),
        ({"out_h": 0}, "out_h must be an int >= 1"),
        ({"out_w": 2.5}, "out_w must be an int"),
        ({"tau": 1.5}, r"tau must be a float in \[0, 1\]"),
        ({"max_boxes": 0}, "max_boxes must be an int >= 1"),
        ({"out_h": 1 << 16, "out_w": 1 << 16}, "2\\*\\*30"),
    ],
)
def test_wrapper_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"maps": torch.zeros(1, 3, 3), "out_h": 4, "out_w": 4, "tau": 0.5, "max_boxes": 1}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        cam_postprocess(**args)  # type: ignore[arg-type]


def test_wrapper_does_not_mutate_its_input() -> None:
    m = torch.randn(2, 4, 4)
    before = m.clone()
    cam_postprocess(m, 8, 8, 0.5)
    assert torch.equal(m, before)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not native_status().cuda, reason="the torch extension was built without CUDA (FCAM_TORCH_CUDA=1)")
@pytest.mark.parametrize("flags", _flags())
def test_cuda_op_matches_cpu_op(flags: tuple[bool, bool, bool]) -> None:
    q, p, norm = flags
    for n, h, w, oh, ow in [(3, 7, 9, 3, 2), (4, 28, 28, 224, 224), (2, 1, 1, 5, 5), (2, 64, 48, 375, 500)]:
        m = torch.randn(n, h, w)
        m[0, 0, 0] = float("nan") if n > 2 else m[0, 0, 0]
        if not norm:
            m = torch.where(m > 0, torch.sigmoid(m), torch.full_like(m, -0.0))  # -0.0 in pass-through maps
        cpu = torch.ops.fcam.cam_postprocess(m, oh, ow, 0.45, q, p, 5, norm)
        gpu = torch.ops.fcam.cam_postprocess(m.cuda(), oh, ow, 0.45, q, p, 5, norm)
        assert torch.equal(gpu[0].cpu().view(torch.int32), cpu[0].view(torch.int32))  # bit-identical full
        for a, b in zip(gpu[1:], cpu[1:]):
            assert torch.equal(a.cpu(), b)
