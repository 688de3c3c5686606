"""The compiled core ``fcam_deploy._native_cpu`` (``ops.postprocess_to_sizes``): one output size per map, against
the NumPy reference op (scipy labelling, cv2 contour areas), every option, and its typed errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcam_deploy.errors import InputError
from fcam_deploy.ops import cam_postprocess_reference, native_cpu_available, postprocess_to_sizes
from tests._support.native import needs_native

pytestmark = needs_native(*native_cpu_available())


def _check(maps: np.ndarray, sizes: list[tuple[int, int]], tau: float, k: int, **opts: bool) -> None:
    res = postprocess_to_sizes(maps, sizes, tau, max_boxes=k, **opts)
    assert len(res.fulls) == len(res.masks) == len(maps)
    assert res.boxes.shape == (len(maps), k, 4) and res.count.shape == (len(maps),)
    for i, (h, w) in enumerate(sizes):
        ref = cam_postprocess_reference(
            maps[i : i + 1],
            h,
            w,
            tau,
            opts.get("quantize_uint8", False),
            opts.get("protocol_boxes", False),
            k,
            opts.get("normalize", True),
        )
        what = f"map {i} -> {h}x{w} {opts}"
        assert res.fulls[i].shape == (h, w) and res.fulls[i].dtype == np.float32, what
        assert res.masks[i].dtype == np.bool_, what
        np.testing.assert_array_equal(res.fulls[i], ref.full[0], err_msg=what)  # same operation order: exact
        np.testing.assert_array_equal(res.masks[i], ref.mask[0].astype(bool), err_msg=what)
        np.testing.assert_array_equal(res.boxes[i], ref.boxes[0], err_msg=what)
        assert int(res.count[i]) == int(ref.count[0]), what


@pytest.mark.parametrize(
    ("quantize_uint8", "protocol_boxes", "normalize"), list(itertools.product([False, True], repeat=3))
)
def test_every_option_against_the_reference(quantize_uint8: bool, protocol_boxes: bool, normalize: bool) -> None:
    rng = np.random.default_rng(int(quantize_uint8) * 4 + int(protocol_boxes) * 2 + int(normalize))
    maps = rng.random((4, 14, 11), dtype=np.float32) * (1.0 if not normalize else 5.0)
    sizes = [(375, 500), (14, 11), (3, 40), (1, 1)]
    _check(maps, sizes, 0.45, 6, quantize_uint8=quantize_uint8, protocol_boxes=protocol_boxes, normalize=normalize)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 4),
    hw=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    seed=st.integers(0, 2**31 - 1),
    tau=st.floats(0.0, 1.0),
    k=st.integers(1, 9),
    binary=st.booleans(),
    normalize=st.booleans(),
)
def test_random_maps_and_sizes(
    n: int, hw: tuple[int, int], seed: int, tau: float, k: int, binary: bool, normalize: bool
) -> None:
    rng = np.random.default_rng(seed)
    maps = rng.random((n, *hw), dtype=np.float32)
    if binary:  # plateaus and ties: many equal-sized components
        maps = (maps > 0.6).astype(np.float32)
    sizes = [(int(rng.integers(1, 70)), int(rng.integers(1, 70))) for _ in range(n)]
    _check(maps, sizes, tau, k, normalize=normalize)


def test_thread_counts_give_identical_results() -> None:
    rng = np.random.default_rng(7)
    maps = rng.random((9, 20, 20), dtype=np.float32)
    sizes = [(int(rng.integers(5, 300)), int(rng.integers(5, 300))) for _ in range(9)]
    ref = postprocess_to_sizes(maps, sizes, 0.3, max_boxes=4, threads=1)
    for threads in (0, 2, 3, 16):
        got = postprocess_to_sizes(maps, sizes, 0.3, max_boxes=4, threads=threads)
        for a, b in zip(got.fulls + got.masks, ref.fulls + ref.masks, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got.boxes, ref.boxes)


def test_empty_batch_and_no_input_mutation() -> None:
    res = postprocess_to_sizes(np.zeros((0, 4, 4), np.float32), [], 0.5)
    assert res.fulls == [] and res.boxes.shape == (0, 1, 4)
    maps = np.random.default_rng(0).random((2, 6, 6), dtype=np.float32)
    before = maps.copy()
    postprocess_to_sizes(maps, [(9, 9), (2, 2)], 0.5)
    np.testing.assert_array_equal(maps, before)


@pytest.mark.parametrize(
    ("maps", "sizes", "kwargs", "match"),
    [
        (np.zeros((2, 3, 3), np.float32), [(4, 4)], {}, "2 maps but 1 sizes"),
        (np.zeros((3, 3), np.float32), [(4, 4)], {}, r"\(N, h, w\)"),
        (np.zeros((1, 3, 3), np.int32), [(4, 4)], {}, "floating"),
        ([[[0.0]]], [(4, 4)], {}, "floating NumPy array"),
        (np.full((1, 3, 3), np.nan, np.float32), [(4, 4)], {}, "NaN or inf"),
        (np.zeros((1, 3, 3), np.float32), [(0, 4)], {}, "must be >= 1"),
        (np.zeros((1, 3, 3), np.float32), [(1 << 16, 1 << 16)], {}, r"2\^30"),
        (np.zeros((1, 3, 3), np.float32), [(4, 4, 4)], {}, "pairs"),
        (np.zeros((1, 3, 3), np.float32), [(4, 4)], {"tau": 1.5}, r"tau must be a float in \[0, 1\]"),
        (np.zeros((1, 3, 3), np.float32), [(4, 4)], {"max_boxes": 0}, "max_boxes"),
    ],
)
def test_typed_errors(maps, sizes, kwargs: dict, match: str) -> None:
    tau = kwargs.pop("tau", 0.5)
    with pytest.raises(InputError, match=match):
        postprocess_to_sizes(maps, sizes, tau, **kwargs)
