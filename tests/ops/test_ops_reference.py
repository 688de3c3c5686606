"""The NumPy reference against independent definitions: torch interpolate, the WSOL protocol (cv2), scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcam_deploy.ops import cam_postprocess_reference

from ._helpers import protocol_boxes_cv2


@pytest.mark.parametrize("size", [(1, 1, 1, 1), (1, 1, 5, 7), (7, 9, 3, 2), (28, 28, 224, 224), (5, 3, 17, 31)])
def test_full_map_is_torch_bilinear_of_the_minmax_map(size: tuple[int, int, int, int]) -> None:
    h, w, oh, ow = size
    rng = np.random.default_rng(h * 100 + ow)
    m = torch.from_numpy(rng.standard_normal((3, h, w)).astype(np.float32) * 5)
    lo, hi = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
    norm = torch.where(hi > lo, (m - lo) / (hi - lo), torch.zeros_like(m))
    expected = F.interpolate(norm[:, None], (oh, ow), mode="bilinear", align_corners=False)[:, 0]
    got = cam_postprocess_reference(m.numpy(), oh, ow, 0.5).full
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-6)


def test_probability_maps_pass_through_unnormalised() -> None:
    p = np.random.default_rng(0).random((2, 6, 5)).astype(np.float32) * 0.6
    out = cam_postprocess_reference(p, 6, 5, 0.5, normalize=False)
    np.testing.assert_array_equal(out.full, p)  # identity resize, no min-max
    assert out.full.max() < 0.6


def test_protocol_examples_from_the_spec() -> None:
    # wsol-protocol.md §1.3: 7x7 square at 1..7 with a 3x3 hole -> v1 [1,1,8,8]; single pixel -> [2,2,3,3];
    # diagonal chain -> one box [1,1,4,4].
    sq = np.zeros((1, 10, 10), np.float32)
    sq[0, 1:8, 1:8] = 1
    sq[0, 3:6, 3:6] = 0
    assert cam_postprocess_reference(sq, 10, 10, 0.5, True, True).boxes[0, 0].tolist() == [1, 1, 8, 8]
    px = np.zeros((1, 5, 5), np.float32)
    px[0, 2, 2] = 1
    assert cam_postprocess_reference(px, 5, 5, 0.5, True, True).boxes[0, 0].tolist() == [2, 2, 3, 3]
    dg = np.zeros((1, 6, 6), np.float32)
    for i in (1, 2, 3):
        dg[0, i, i] = 1
    r = cam_postprocess_reference(dg, 6, 6, 0.5, True, True, max_boxes=3)
    assert r.count[0] == 1 and r.boxes[0, 0].tolist() == [1, 1, 4, 4]


def test_empty_mask_protocol_box_and_plain_count() -> None:
    const = np.full((1, 4, 4), 2.0, np.float32)
    assert cam_postprocess_reference(const, 8, 8, 0.2, True, True).boxes[0, 0].tolist() == [0, 0, 0, 0]
    assert cam_postprocess_reference(const, 8, 8, 0.2, True, True).count[0] == 1
    plain = cam_postprocess_reference(const, 8, 8, 0.2)
    assert plain.count[0] == 0 and (plain.boxes == -1).all() and (plain.full == 0).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(2, 9), w=st.integers(2, 9), oh=st.integers(4, 48), ow=st.integers(4, 48),
    tau_i=st.integers(0, 99), seed=st.integers(0, 2**31 - 1),
)
def test_reference_equals_wsol_protocol_boxes(h: int, w: int, oh: int, ow: int, tau_i: int, seed: int) -> None:
    tau = np.arange(0, 1, 0.01)[tau_i]  # the protocol's own float64 thresholds
    m = np.random.default_rng(seed).standard_normal((1, h, w)).astype(np.float32)
    r = cam_postprocess_reference(m, oh, ow, float(tau), True, True, max_boxes=64)
    v1, th, outer = protocol_boxes_cv2(r.full[0], float(tau))
    np.testing.assert_array_equal(r.mask[0], (th > 0).astype(np.uint8))
    assert r.boxes[0, 0].tolist() == v1
    if outer:
        assert sorted(r.boxes[0, : r.count[0]].tolist()) == sorted(outer)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 14), w=st.integers(1, 14), p=st.floats(0.2, 0.8))
def test_components_are_scipy_8_connected(seed: int, h: int, w: int, p: float) -> None:
    from scipy import ndimage

    mask = (np.random.default_rng(seed).random((h, w)) < p).astype(np.float32)
    r = cam_postprocess_reference(mask[None], h, w, 0.5, max_boxes=h * w, normalize=False)
    _, n = ndimage.label(mask, structure=np.ones((3, 3)))
    assert r.count[0] == n
    sizes = [(b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in r.boxes[0, :n].tolist()]
    assert all(s >= 1 for s in sizes)
