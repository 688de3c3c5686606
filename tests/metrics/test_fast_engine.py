"""The fast engine (numba component-tree sweep) gives exactly the OpenCV reference's numbers.

Maps are drawn to hit every corner of the protocol: ties and plateaus (few distinct values), holes and nested
islands, 8-connected diagonal touches, objects on the border, empty and constant maps, maps whose maximum is
below 1, and realistic smooth multimodal 224 x 224 maps at 1000 thresholds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("numba", reason="the fast metrics engine needs numba (pip install numba)")

from fcam_deploy.metrics import cam_thresholds
from fcam_deploy.metrics.fast import best_ious_fast
from fcam_deploy.metrics.reference import best_ious_reference

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(u8: np.ndarray, gt: np.ndarray, step: float) -> None:
    t = cam_thresholds(step)
    f1, f2 = best_ious_fast(u8, gt, t)
    r1 = best_ious_reference(u8, gt, t, multi_contour=False)
    r2 = best_ious_reference(u8, gt, t, multi_contour=True)
    assert f1 is not None and f2 is not None
    np.testing.assert_array_equal(f2, r2, err_msg=f"V2 differs\n{u8}\n{gt}")
    np.testing.assert_array_equal(f1, r1, err_msg=f"v1 differs\n{u8}\n{gt}")


@st.composite
def boxes_in(draw: st.DrawFn, h: int, w: int) -> np.ndarray:
    n = draw(st.integers(1, 3))
    out = []
    for _ in range(n):
        x0, x1 = sorted(draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
        y0, y1 = sorted(draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
        out.append([x0, y0, x1, y1])
    return np.array(out, dtype=np.int64)


@st.composite
def small_maps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    h = draw(st.integers(1, 14))
    w = draw(st.integers(1, 14))
    alphabet = draw(
        st.sampled_from(
            [
                st.sampled_from([0, 255]),  # binary: holes, diagonals, border objects
                st.sampled_from([0, 60, 128, 255]),  # plateaus and ties
                st.sampled_from([0, 1, 2, 3]),  # max far below 255 (relative threshold)
                st.integers(0, 255),  # everything distinct-ish
            ]
        )
    )
    u8 = draw(hnp.arrays(np.uint8, (h, w), elements=alphabet))
    return u8, draw(boxes_in(h, w))


@SETTINGS
@given(data=small_maps(), step=st.sampled_from([0.01, 0.05, 0.2]))
def test_fast_equals_reference_on_small_maps(data: tuple[np.ndarray, np.ndarray], step: float) -> None:
    u8, gt = data
    _check(u8, gt, step)


def _rings(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Nested rings / islands in holes / diagonal bridges: the RETR_TREE hierarchy cases."""
    u8 = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = int(rng.integers(1, max(2, min(h, w) // 2)))
        yy, xx = np.ogrid[:h, :w]
        d = np.maximum(abs(yy - cy), abs(xx - cx)) if rng.random() < 0.5 else np.hypot(yy - cy, xx - cx)
        ring = (d <= r) & (d > r - rng.integers(1, 3))
        u8[ring] = np.maximum(u8[ring], rng.integers(1, 256))
    return u8


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_fast_equals_reference_on_rings_and_islands(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 40, 2))
    u8 = _rings(h, w, rng)
    gt = []
    for _ in range(int(rng.integers(1, 3))):
        x0, x1 = sorted(rng.integers(0, w, 2))
        y0, y1 = sorted(rng.integers(0, h, 2))
        gt.append([x0, y0, x1, y1])
    _check(u8, np.array(gt), 0.01)


def test_empty_and_constant_maps() -> None:
    gt = np.array([[0, 0, 9, 9], [3, 4, 7, 8]])
    _check(np.zeros((12, 12), np.uint8), gt, 0.01)
    for v in (1, 128, 255):
        _check(np.full((12, 12), v, np.uint8), gt, 0.01)
    f1, f2 = best_ious_fast(np.zeros((12, 12), np.uint8), np.array([[0, 0, 9, 9]]), cam_thresholds(0.01))
    assert f1 is not None and f2 is not None
    assert (f2 == 0.01).all() and (f1 == 0.01).all()  # the [0,0,0,0] box: 1 pixel of the 10x10 box


def test_hole_box_can_beat_the_outer_box() -> None:
    """A GT box inside a ring: the hole contour's box wins, so holes must be evaluated."""
    u8 = np.zeros((20, 20), np.uint8)
    u8[2:18, 2:18] = 255
    u8[4:16, 4:16] = 0
    gt = np.array([[3, 3, 17, 17]])
    t = cam_thresholds(0.01)
    _, f2 = best_ious_fast(u8, gt, t)
    r2 = best_ious_reference(u8, gt, t, multi_contour=True)
    assert f2 is not None
    np.testing.assert_array_equal(f2, r2)
    assert f2[0] == 1.0  # hole contour box (3, 3, 15 + 2, 15 + 2) equals the GT; the outer box (2, 2, 18, 18) does not


def smooth_map(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """Sum of random anisotropic Gaussian blobs (some negative), min-max normalised: CAM-like."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    m = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0, size, 2)
        sy, sx = rng.uniform(size / 30, size / 5, 2)
        a = rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.8 else -0.5)
        m += a * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    m += rng.normal(0, 0.01, m.shape)
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("seed", range(3))
def test_fast_equals_reference_on_realistic_maps_at_1000_thresholds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = smooth_map(rng)
    u8 = (s * 255).astype(np.uint8)
    gt = np.array([[30, 40, 120, 150], [100, 20, 200, 90]])[: 1 + seed % 2]
    _check(u8, gt, 0.001)


def test_v1_only_and_v2_only_paths_match_the_combined_one() -> None:
    rng = np.random.default_rng(4)
    u8 = (smooth_map(rng, 64) * 255).astype(np.uint8)
    gt = np.array([[5, 5, 30, 40]])
    t = cam_thresholds(0.01)
    both = best_ious_fast(u8, gt, t)
    only1 = best_ious_fast(u8, gt, t, v1=True, v2=False)
    only2 = best_ious_fast(u8, gt, t, v1=False, v2=True)
    assert only1[1] is None and only2[0] is None
    np.testing.assert_array_equal(both[0], only1[0])
    np.testing.assert_array_equal(both[1], only2[1])


def test_v1_tie_between_equal_components_follows_opencv_order() -> None:
    """Two equal squares: the tie is broken by OpenCV's contour order, reproduced through the reference."""
    u8 = np.zeros((12, 12), np.uint8)
    u8[1:4, 1:4] = 255
    u8[7:10, 6:9] = 255
    for gt in (np.array([[1, 1, 3, 3]]), np.array([[6, 7, 8, 9]])):
        _check(u8, gt, 0.1)


def test_auto_engine_falls_back_to_reference_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    from fcam_deploy.metrics import BoxEvaluator, fast

    monkeypatch.setattr(fast, "fast_engine_available", lambda: False)
    assert BoxEvaluator(engine="auto")._engine == "reference"


def test_engines_reject_bad_inputs() -> None:
    from fcam_deploy.errors import InputError

    t = cam_thresholds(0.1)
    for fn in (lambda u, g: best_ious_fast(u, g, t), lambda u, g: best_ious_reference(u, g, t, True)):
        with pytest.raises(InputError):
            fn(np.zeros((4, 4), np.int64), np.array([[0, 0, 1, 1]]))
        with pytest.raises(InputError):
            fn(np.zeros((4, 4), np.uint8), np.zeros((0, 4), np.int64))
        with pytest.raises(RuntimeError):
            fn(np.zeros((4, 4), np.uint8), np.array([[2, 0, 1, 1]]))
