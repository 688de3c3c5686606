"""PxAP: the reference MaskEvaluator tests on its own OpenImages mask fixtures, plus an independent oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcam_deploy.errors import ImageError, InputError
from fcam_deploy.metrics import MaskEvaluator, UndefinedMetricError, cam_thresholds, load_gt_mask

VAL = "val/0bt_c3"
# paths as listed in the reference metadata (metadata/OpenImages/val/localization.txt)
MASKS = {
    "1cd9ac0169ec7df0": ([f"{VAL}/1cd9ac0169ec7df0_m0bt_c3_6932e993.png"], f"{VAL}/1cd9ac0169ec7df0_ignore.png"),
    "3a29f0b33894d4a6": (
        [f"{VAL}/3a29f0b33894d4a6_m0bt_c3_d2422806.png", f"{VAL}/3a29f0b33894d4a6_m0bt_c3_3581e3ae.png"],
        f"{VAL}/3a29f0b33894d4a6_ignore.png",
    ),
    "3b3b9931325d65c9": ([f"{VAL}/3b3b9931325d65c9_m0bt_c3_d4e2e136.png"], f"{VAL}/3b3b9931325d65c9_ignore.png"),
    "490365f63135f3e0": (
        ["val/0by6g/490365f63135f3e0_m0by6g_4f9ded4f.png"],
        "val/0by6g/490365f63135f3e0_ignore.png",
    ),
    "b4d953e7105da1d8": (
        ["val/0by6g/b4d953e7105da1d8_m0by6g_9f8621ff.png"],
        "val/0by6g/b4d953e7105da1d8_ignore.png",
    ),
}
# measured fg / bg / ignore pixel counts in the 224 frame (docs/protocol.md §1.5)
COUNTS = {
    "1cd9ac0169ec7df0": (43031, 7145, 0),
    "3a29f0b33894d4a6": (833, 49343, 0),
    "3b3b9931325d65c9": (347, 13910, 35919),
    "490365f63135f3e0": (0, 50176, 0),
    "b4d953e7105da1d8": (50176, 0, 0),
}


def _mask(root: Path, key: str) -> np.ndarray:
    paths, ignore = MASKS[key]
    base = root / "test_data" / "test_masks"
    return load_gt_mask([base / p for p in paths], base / ignore)


def _pxap(scoremaps_and_masks: list[tuple[np.ndarray, np.ndarray]], step: float = 0.01) -> float:
    ev = MaskEvaluator(cam_curve_interval=step)
    for s, m in scoremaps_and_masks:
        ev.accumulate(s, m)
    return float(ev.compute()["PxAP"])


def test_metadata_fixture_lists_the_same_mask_paths(wsol_data: Path) -> None:
    lines = (wsol_data / "metadata/OpenImages/val/localization.txt").read_text().splitlines()
    listed: dict[str, list[str]] = {}
    for line in lines:
        image_id, mask, _ignore = line.split(",")
        listed.setdefault(Path(image_id).stem, []).append(mask)
    for key, (paths, _) in MASKS.items():
        assert sorted(listed[key]) == sorted(paths)


@pytest.mark.parametrize("key", sorted(COUNTS))
def test_gt_mask_counts(wsol_data: Path, key: str) -> None:
    m = _mask(wsol_data, key)
    assert m.shape == (224, 224) and m.dtype == np.uint8
    assert ((m == 1).sum(), (m == 0).sum(), (m == 255).sum()) == COUNTS[key]


@pytest.mark.parametrize("key", ["1cd9ac0169ec7df0", "3a29f0b33894d4a6", "3b3b9931325d65c9"])
@pytest.mark.parametrize("ignore_score", [0.0, 1.0])
def test_perfect_scoremap_scores_exactly_100(wsol_data: Path, key: str, ignore_score: float) -> None:
    m = _mask(wsol_data, key)
    s = m.astype(np.float64)
    s[m == 255] = ignore_score
    assert _pxap([(s, m)]) == 100.0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("1cd9ac0169ec7df0", 100.0 * 43031 / (43031 + 7145)),  # 85.76
        ("3a29f0b33894d4a6", 100.0 * 833 / (833 + 49342)),  # 1.66 (the reference test's figure)
        ("3b3b9931325d65c9", 100.0 * 347 / (347 + 13909)),  # 2.43
    ],
)
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_scoremap(wsol_data: Path, key: str, expected: float, value: float) -> None:
    m = _mask(wsol_data, key)
    got = _pxap([(np.full((224, 224), value), m)])
    assert got == pytest.approx(expected, abs=0.1)
    fg, bg, _ = COUNTS[key]
    assert got == pytest.approx(100.0 * fg / (fg + bg), rel=1e-12)  # the exact constant-map value


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_background_gt_raises_runtime_error(wsol_data: Path, value: float) -> None:
    m = _mask(wsol_data, "490365f63135f3e0")
    with pytest.raises(RuntimeError, match="No positive ground truth"):
        _pxap([(np.full((224, 224), value), m)])


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_foreground_gt_scores_100(wsol_data: Path, value: float) -> None:
    m = _mask(wsol_data, "b4d953e7105da1d8")
    assert _pxap([(np.full((224, 224), value), m)]) == 100.0


def test_nan_scoremap_raises_value_error(wsol_data: Path) -> None:
    m = _mask(wsol_data, "1cd9ac0169ec7df0")
    with pytest.raises(ValueError):
        _pxap([(np.full((224, 224), np.nan), m)])


def test_no_image_is_undefined() -> None:
    with pytest.raises(UndefinedMetricError):
        MaskEvaluator().compute()


def test_histograms_pool_pixels_over_images(wsol_data: Path) -> None:
    """Pooling != mean of per-image APs: two constant maps give the pooled fg fraction."""
    a, b = _mask(wsol_data, "1cd9ac0169ec7df0"), _mask(wsol_data, "3a29f0b33894d4a6")
    got = _pxap([(np.full((224, 224), 0.5), a), (np.full((224, 224), 0.5), b)])
    fg = 43031 + 833
    bg = 7145 + 49343
    assert got == pytest.approx(100.0 * fg / (fg + bg), rel=1e-12)


def test_missing_or_corrupt_mask_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        load_gt_mask([tmp_path / "nope.png"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="cannot be decoded"):
        load_gt_mask([bad])
    with pytest.raises(InputError):
        load_gt_mask([])


def test_mask_resize_is_nearest_with_floor_indexing_and_grayscale(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(3)
    rgb = (rng.random((57, 83, 3)) < 0.5).astype(np.uint8) * 255
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), rgb)
    # independent oracle: luma of the BGR pixel (cv2's 0.299 R + 0.587 G + 0.114 B, rounded), floor-index sampling
    gray = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
    ys = np.floor(np.arange(224) * 57 / 224).astype(int)
    xs = np.floor(np.arange(224) * 83 / 224).astype(int)
    expected = (gray[np.ix_(ys, xs)] > 0.5).astype(np.uint8)
    assert np.array_equal(load_gt_mask([path]), expected)


def _oracle_pxap(fg_scores: np.ndarray, bg_scores: np.ndarray, step: float) -> float:
    """Protocol definition, written independently: operating points at edges 2, 1, t_{N-1}, ..., t_0."""
    edges = list(cam_thresholds(step)) + [1.0, 2.0]
    edges = sorted(edges, reverse=True)
    p = len(fg_scores)
    prev_recall = 0.0
    auc = 0.0
    for e in edges:
        tp = int((fg_scores >= e).sum())
        fp = int((bg_scores >= e).sum())
        if e == 2.0:
            prev_recall = tp / p
            continue
        recall = tp / p
        if tp + fp > 0:
            auc += tp / (tp + fp) * (recall - prev_recall)
        prev_recall = recall
    return 100 * auc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    step=st.sampled_from([0.01, 0.1, 0.05]),
    quantised=st.booleans(),
)
def test_pxap_equals_independent_oracle(seed: int, step: float, quantised: bool) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 20, 2)
    maps, masks = [], []
    for _ in range(int(rng.integers(1, 4))):
        s = rng.random((h, w))
        if quantised:  # scores exactly on bin edges and on 1.0
            s = np.round(s * 10) / 10
        m = rng.choice(np.array([0, 1, 255], np.uint8), size=(h, w), p=[0.5, 0.35, 0.15])
        maps.append(s)
        masks.append(m)
    fg = np.concatenate([s[m == 1] for s, m in zip(maps, masks)])
    bg = np.concatenate([s[m == 0] for s, m in zip(maps, masks)])
    if len(fg) == 0:
        with pytest.raises(UndefinedMetricError):
            _pxap(list(zip(maps, masks)), step)
        return
    assert _pxap(list(zip(maps, masks)), step) == pytest.approx(_oracle_pxap(fg, bg, step), rel=1e-9, abs=1e-9)


def test_mask_is_resized_before_the_float_cast_with_identical_values(tmp_path: Path) -> None:
    """load_gt_mask resizes the uint8 mask (nearest) before the reference's float32 cast, to keep one byte per
    pixel at full size: nearest neighbour only picks pixels, so the result equals the reference order."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(7)
    for k, (h, w) in enumerate([(1, 1), (37, 501), (224, 224), (640, 97), (333, 480)]):
        m = (rng.random((h, w)) < 0.4).astype(np.uint8) * 255
        Image.fromarray(m).save(tmp_path / f"m{k}.png")
        ref = cv2.resize(np.float32(m), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
        np.testing.assert_array_equal(load_gt_mask([tmp_path / f"m{k}.png"], image_size=(w, h)), ref.astype(np.uint8))
    with pytest.raises(ImageError, match="its image is"):
        load_gt_mask([tmp_path / "m1.png"], image_size=(w, h))
