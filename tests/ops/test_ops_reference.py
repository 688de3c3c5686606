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
    # docs/protocol.md §1.3: 7x7 square at 1..7 with a 3x3 hole -> v1 [1,1,8,8]; single pixel -> [2,2,3,3];
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
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    oh=st.integers(4, 48),
    ow=st.integers(4, 48),
    tau_i=st.integers(0, 99),
    seed=st.integers(0, 2**31 - 1),
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


def _flood_fill_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Independent oracle: 8-connected components by an explicit stack flood fill in raster order, each as
    (pixel count, first pixel index, inclusive box), ranked as the op contract says (largest first, ties to the
    earlier first pixel)."""
    h, w = mask.shape
    seen = np.zeros((h, w), dtype=bool)
    comps = []
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or seen[y, x]:
                continue
            seen[y, x] = True
            stack, pixels = [(y, x)], []
            while stack:
                cy, cx = stack.pop()
                pixels.append((cy, cx))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
            ys, xs = [p[0] for p in pixels], [p[1] for p in pixels]
            comps.append((len(pixels), y * w + x, (min(xs), min(ys), max(xs), max(ys))))
    comps.sort(key=lambda c: (-c[0], c[1]))
    return [c[2] for c in comps]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 14), w=st.integers(1, 14), p=st.floats(0.2, 0.8))
def test_components_are_8_connected_and_ranked(seed: int, h: int, w: int, p: float) -> None:
    """Count, boxes and order of the components equal a flood-fill oracle (not scipy, which the reference uses)."""
    mask = (np.random.default_rng(seed).random((h, w)) < p).astype(np.float32)
    r = cam_postprocess_reference(mask[None], h, w, 0.5, max_boxes=h * w, normalize=False)
    expected = _flood_fill_boxes(mask > 0.5)
    assert r.count[0] == len(expected)
    assert [tuple(b) for b in r.boxes[0, : r.count[0]].tolist()] == expected


def test_flood_fill_oracle_on_a_hand_made_mask() -> None:
    """The oracle itself: two diagonal-touching pixels are one component; a 2x2 block beats a 3-pixel line."""
    m = np.zeros((5, 6), dtype=bool)
    m[0, 0] = m[1, 1] = True  # diagonal neighbours: one component of 2
    m[3:5, 3:5] = True  # 4 pixels
    m[0, 3:6] = True  # 3 pixels, starts before the block
    assert _flood_fill_boxes(m) == [(3, 3, 4, 4), (3, 0, 5, 0), (0, 0, 1, 1)]
