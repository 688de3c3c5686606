"""The reference test suite's box/IoU/resize expectations (docs/protocol.md §1.5) and the protocol's rules."""

from __future__ import annotations

import numpy as np
import pytest

from fcam_deploy.errors import InputError, MapError
from fcam_deploy.metrics import (
    BoxConventionError,
    cam_thresholds,
    iou_matrix,
    resize_box,
    scoremap_to_uint8,
    validate_scoremap,
)
from fcam_deploy.metrics.reference import boxes_at_level, boxes_from_scoremap

UNIMODAL = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.4, 0.4, 0.4, 0.6],
        [0.0, 0.4, 1.0, 0.8, 0.6],
        [0.0, 0.4, 0.4, 0.4, 0.6],
    ]
)
MULTIMODAL = np.array(
    [
        [0.4, 0.0, 0.2, 0.2, 0.2],
        [0.4, 0.4, 0.0, 0.4, 0.0],
        [0.0, 0.0, 0.0, 0.4, 0.0],
        [1.0, 0.6, 0.8, 0.2, 0.2],
    ]
)


# ---- IoU (calculate_multiple_iou tests)
def test_iou_degenerate_zero_boxes_are_identical() -> None:
    ious = iou_matrix(np.zeros((3, 4), dtype=int), np.zeros((5, 4), dtype=int))
    assert isinstance(ious, np.ndarray) and ious.dtype == np.float64 and ious.shape == (3, 5)
    assert (ious == 1.0).all()


def test_iou_bad_convention_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError):
        iou_matrix(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))
    with pytest.raises(BoxConventionError):
        iou_matrix(np.array([[-1, 0, 2, 2]]), np.array([[1, 1, 2, 2]]))


def test_iou_eye_boxes() -> None:
    boxes = np.array([[1, 1, 3, 3], [4, 4, 5, 5]])
    assert (iou_matrix(boxes, boxes) == np.eye(2)).all()


def test_iou_realistic_value() -> None:
    assert iou_matrix(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == pytest.approx(8 / 27, abs=1e-12)


def test_iou_empty_box_against_10x10_box_at_origin_is_one_percent() -> None:
    assert iou_matrix(np.zeros((1, 4), int), np.array([[0, 0, 9, 9]]))[0, 0] == pytest.approx(0.01, abs=1e-15)


# ---- resize_bbox tests
def test_resize_box_case() -> None:
    assert resize_box((1, 2, 4, 3), (10, 20), (35, 10)) == (3, 1, 14, 1)


def test_resize_box_degenerate() -> None:
    assert resize_box((1, 2, 1, 2), (3, 3), (3, 3)) == (1, 2, 1, 2)


def test_resize_box_to_224_truncates() -> None:
    assert resize_box((0, 0, 499, 374), (500, 375)) == (0, 0, 223, 223)
    # CUB val image 1 of the reference metadata
    x0, y0, x1, y1 = resize_box((176, 136, 459, 291), (560, 419))
    assert (x0, y0, x1, y1) == (int(176 * 224 / 560), int(136 * 224 / 419), int(459 * 224 / 560), int(291 * 224 / 419))


# ---- compute_bboxes_from_scoremaps tests (v1, thresholds arange(0, 1, 0.2))
def _v1_boxes(scoremap: np.ndarray) -> list[list[int]]:
    boxes = boxes_from_scoremap(scoremap, np.arange(0, 1, 0.2), multi_contour=False)
    assert all(b.shape == (1, 4) for b in boxes)
    return [b[0].tolist() for b in boxes]


def test_boxes_degenerate_zero_map() -> None:
    assert _v1_boxes(np.zeros((3, 3))) == [[0, 0, 0, 0]] * 5


def test_boxes_unimodal() -> None:
    assert _v1_boxes(UNIMODAL) == [[1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3], [2, 2, 3, 3]]


def test_boxes_multimodal() -> None:
    assert _v1_boxes(MULTIMODAL) == [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]]


def test_boxes_nan_map_raises_value_error() -> None:
    with pytest.raises(ValueError):
        boxes_from_scoremap(np.full((3, 3), np.nan), np.arange(0, 1, 0.2), multi_contour=False)


# ---- verified examples of docs/protocol.md §1.3
def test_hole_square_gives_outer_and_hole_boxes() -> None:
    u8 = np.zeros((10, 10), np.uint8)
    u8[1:8, 1:8] = 255
    u8[3:6, 3:6] = 0
    v2 = sorted(boxes_at_level(u8, 0, multi_contour=True).tolist())
    assert v2 == [[1, 1, 8, 8], [2, 2, 7, 7]]
    assert boxes_at_level(u8, 0, multi_contour=False).tolist() == [[1, 1, 8, 8]]


def test_single_pixel_and_diagonal_chain() -> None:
    u8 = np.zeros((5, 5), np.uint8)
    u8[2, 2] = 200
    assert boxes_at_level(u8, 0, multi_contour=True).tolist() == [[2, 2, 3, 3]]
    d = np.zeros((6, 6), np.uint8)
    d[1, 1] = d[2, 2] = d[3, 3] = 255
    assert boxes_at_level(d, 0, multi_contour=True).tolist() == [[1, 1, 4, 4]]


def test_box_overshoot_is_clipped_at_the_border() -> None:
    u8 = np.zeros((4, 4), np.uint8)
    u8[2:4, 2:4] = 255
    assert boxes_at_level(u8, 0, multi_contour=True).tolist() == [[2, 2, 3, 3]]


def test_two_single_pixels_v1_tie_takes_the_lower_right_one() -> None:
    u8 = np.zeros((6, 6), np.uint8)
    u8[1, 1] = u8[4, 4] = 255
    assert boxes_at_level(u8, 0, multi_contour=False).tolist() == [[4, 4, 5, 5]]


# ---- thresholds, uint8 truncation, relative threshold
def test_thresholds_are_i_times_step_in_float64() -> None:
    t = cam_thresholds(0.01)
    assert t.dtype == np.float64 and len(t) == 100
    assert np.array_equal(t, np.arange(100) * 0.01)
    assert (t != np.arange(100) / 100).sum() > 0  # i/100 differs in the last bit for some i
    assert len(cam_thresholds(0.001)) == 1000
    with pytest.raises(InputError):
        cam_thresholds(0)


def test_uint8_cast_truncates() -> None:
    s = np.array([[0.0, 1 / 255 - 1e-12, 1 / 255, 0.999, 1.0]])
    assert scoremap_to_uint8(s).tolist() == [[0, 0, 1, 254, 255]]


def test_threshold_is_relative_to_the_uint8_max_and_strict() -> None:
    s = np.zeros((5, 5))
    s[1, 1] = 100 / 255  # u8 100 = the maximum
    s[3, 3] = 50 / 255 + 1e-9  # u8 50
    # t = 0.5 -> level int(0.5 * 100) = 50 -> strict: u8 > 50 keeps only the max pixel
    boxes = boxes_from_scoremap(s, np.array([0.0, 0.5]), multi_contour=True)
    assert sorted(boxes[0].tolist()) == [[1, 1, 2, 2], [3, 3, 4, 4]]
    assert boxes[1].tolist() == [[1, 1, 2, 2]]


# ---- map validation
@pytest.mark.parametrize(
    "bad",
    [
        np.full((3, 3), np.nan),
        np.full((3, 3), 1.5),
        np.full((3, 3), -0.1),
        np.zeros((3, 3, 1)),
        np.zeros((3, 3), dtype=np.int64),
        [[0.0, 1.0]],
    ],
)
def test_validate_scoremap_rejects(bad: object) -> None:
    with pytest.raises(MapError):
        validate_scoremap(bad, "x.jpg")


def test_validate_scoremap_casts_float32_to_float64() -> None:
    s = validate_scoremap(np.full((2, 2), 0.5, np.float32))
    assert s.dtype == np.float64
