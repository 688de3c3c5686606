"""Seed sampler vs an independent NumPy / scikit-image / SciPy oracle (docs/method.md §2.3, §7.7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

from fcam_deploy.errors import InputError
from fcam_deploy.train.seeds import IGNORE_INDEX, SeedConfig, sample_seeds, scaled_erode_kernel, seed_roi


def oracle_candidates(cam: np.ndarray, k: int, min_p: float = 0.1):
    """Official semantics, independently: uint8 truncation, Otsu clamp [1,254], strict >, border-neutral
    erosion (scipy border_value=1) with fallback, bottom int(min_p*H*W) pixels by stable rank."""
    u8 = (np.clip(cam.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    if u8.min() == u8.max():
        return None
    t = int(min(max(float(threshold_otsu(u8)), 1.0), 254.0))
    roi = u8 > t
    er = ndimage.binary_erosion(roi, structure=np.ones((k, k), bool), iterations=1, border_value=1)
    if er.any():
        roi = er
    n_low = int(min_p * cam.size)
    order = np.argsort(cam.reshape(-1), kind="stable")
    bg = np.zeros(cam.size, bool)
    bg[order[:n_low]] = True
    return roi, bg.reshape(cam.shape)


def blob_cam(h: int, w: int, cy: float, cx: float, s: float, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)) + 0.05 * rng.random((h, w))
    m = m - m.min()
    return (m / m.max()).astype(np.float32)


@pytest.mark.parametrize("case", range(12))
def test_candidates_match_oracle(case: int) -> None:
    rng = np.random.default_rng(case)
    h, w = (64, 64) if case % 2 else (96, 80)
    cam = blob_cam(h, w, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 20), rng)
    if case == 3:  # blob touching the border: a border-neutral erosion must keep the border pixels
        cam = blob_cam(h, w, 0.0, 0.0, 12.0, rng)
    cfg = SeedConfig()
    k = scaled_erode_kernel(cfg.erode_k, min(h, w))
    got = seed_roi(torch.from_numpy(cam), cfg)
    want = oracle_candidates(cam, k)
    assert got is not None and want is not None
    np.testing.assert_array_equal(got[0].numpy(), want[0])
    np.testing.assert_array_equal(got[1].numpy(), want[1])


def test_border_is_neutral_for_erosion() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[:8, :8] = 1.0  # ROI in the corner, 8x8; a 5x5 erosion keeps rows/cols 0..5 when the border is neutral
    cam[20, 20] = 0.3
    roi, _ = seed_roi(torch.from_numpy(cam), SeedConfig(erode_k=5, scale_erode_with_size=False))  # type: ignore[misc]
    assert roi[:6, :6].all() and not roi[6:, :].any() and not roi[:, 6:].any()


def test_erosion_fallback_keeps_roi_when_emptied() -> None:
    cam = np.zeros((40, 40), np.float32)
    cam[10:13, 10:13] = 1.0  # 3x3 ROI is emptied by an 11x11 erosion -> kept as is
    roi, _ = seed_roi(torch.from_numpy(cam), SeedConfig(scale_erode_with_size=False))  # type: ignore[misc]
    want = oracle_candidates(cam, 11)
    assert want is not None
    np.testing.assert_array_equal(roi.numpy(), want[0])
    assert int(roi.sum()) == 9


def test_constant_map_is_all_ignore() -> None:
    cams = torch.full((2, 16, 16), 0.5)
    cams[1] += torch.rand(16, 16) / 700.0  # differences below one uint8 step: still a "bad egg"
    out = sample_seeds(cams, torch.Generator().manual_seed(0))
    assert (out == IGNORE_INDEX).all()


def test_otsu_clamped_to_1() -> None:
    # Two-level uint8 map {0, 1}: Otsu gives 0 -> clamped to 1 -> ROI (u8 > 1) is empty, no fg seed.
    cam = np.zeros((20, 20), np.float32)
    cam[5:10, 5:10] = 1.5 / 255
    got = seed_roi(torch.from_numpy(cam))
    assert got is not None and not got[0].any()
    out = sample_seeds(torch.from_numpy(cam)[None], torch.Generator().manual_seed(0))
    assert (out == 1).sum() == 0 and (out == 0).sum() > 0


def _oracle_labels(cam: np.ndarray, gen: torch.Generator, cfg: SeedConfig) -> np.ndarray:
    k = scaled_erode_kernel(cfg.erode_k, min(cam.shape))
    cand = oracle_candidates(cam, k, cfg.min_p)
    lab = np.full(cam.shape, IGNORE_INDEX, np.int64)
    if cand is None:
        return lab
    marks = []
    for c, n in ((cand[0], cfg.n_fg), (cand[1], cfg.n_bg)):
        idx = np.flatnonzero(c)
        m = np.zeros(cam.size, bool)
        take = min(n, idx.size)
        if take:
            m[idx[torch.randperm(idx.size, generator=gen)[:take].numpy()]] = True
        m = ndimage.binary_dilation(m.reshape(cam.shape), structure=np.ones((cfg.dilate_k,) * 2, bool))
        marks.append(m)
    fg, bg = marks
    lab[fg & ~bg] = 1
    lab[bg & ~fg] = 0
    return lab


@pytest.mark.parametrize("case", range(8))
def test_labels_match_oracle_draws(case: int) -> None:
    rng = np.random.default_rng(100 + case)
    cams = np.stack(
        [blob_cam(48, 48, rng.uniform(5, 43), rng.uniform(5, 43), rng.uniform(4, 12), rng) for _ in range(3)]
    )
    cfg = SeedConfig(n_fg=1 + case % 3, n_bg=1 + case % 2)
    gens = [torch.Generator().manual_seed(1000 * case + i) for i in range(3)]
    got = sample_seeds(torch.from_numpy(cams), gens, cfg).numpy()
    for i in range(3):
        want = _oracle_labels(cams[i], torch.Generator().manual_seed(1000 * case + i), cfg)
        np.testing.assert_array_equal(got[i], want)
    # Each image: fg seeds are the 3x3 dilation of n_fg ROI pixels, so at most 9 * n_fg fg labels.
    assert ((got == 1).sum(axis=(1, 2)) <= 9 * cfg.n_fg).all()
    assert ((got == 1).sum(axis=(1, 2)) > 0).all() and ((got == 0).sum(axis=(1, 2)) > 0).all()


def test_conflicts_become_ignore() -> None:
    # Tiny 4x4 map: bottom 10% = 1 pixel, ROI = top pixel; adjacent so their 3x3 dilations overlap.
    cam = np.full((4, 4), 0.5, np.float32)
    cam[1, 1] = 1.0
    cam[1, 2] = 0.0
    out = sample_seeds(
        torch.from_numpy(cam)[None],
        torch.Generator().manual_seed(0),
        SeedConfig(min_p=1 / 16, scale_erode_with_size=False),
    )[0].numpy()
    fg = ndimage.binary_dilation(np.pad([[1]], 0) if False else _single(4, 1, 1), np.ones((3, 3), bool))
    bg = ndimage.binary_dilation(_single(4, 1, 2), np.ones((3, 3), bool))
    np.testing.assert_array_equal(out == 1, fg & ~bg)
    np.testing.assert_array_equal(out == 0, bg & ~fg)
    assert (out[fg & bg] == IGNORE_INDEX).all() and (fg & bg).sum() == 6


def _single(n: int, y: int, x: int) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[y, x] = True
    return m


def test_redrawn_each_call_and_reproducible() -> None:
    rng = np.random.default_rng(5)
    cam = torch.from_numpy(blob_cam(64, 64, 30, 30, 12, rng))[None]
    g = torch.Generator().manual_seed(7)
    a, b = sample_seeds(cam, g), sample_seeds(cam, g)
    assert not torch.equal(a, b)  # new draws on the next iteration
    assert torch.equal(a, sample_seeds(cam, torch.Generator().manual_seed(7)))


def test_scaled_kernel_and_errors() -> None:
    assert [scaled_erode_kernel(11, s) for s in (224, 128, 96, 64, 16)] == [11, 7, 5, 3, 1]
    with pytest.raises(InputError):
        sample_seeds(torch.zeros(4, 4), torch.Generator())
    with pytest.raises(InputError):
        sample_seeds(torch.full((1, 4, 4), float("nan")), torch.Generator())


def test_scaled_dilation_gives_single_pixel_seeds_at_96() -> None:
    rng = np.random.default_rng(9)
    cams = torch.from_numpy(np.stack([blob_cam(96, 96, 40, 50, 14, rng) for _ in range(4)]))
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    scaled = sample_seeds(cams, gens, SeedConfig(scale_dilate_with_size=True)).numpy()
    assert ((scaled == 1).sum(axis=(1, 2)) == 1).all() and ((scaled == 0).sum(axis=(1, 2)) == 1).all()
    # the same draws, dilated 3x3 when not scaled: each seed pixel is the centre of its 3x3 square
    plain = sample_seeds(cams, [torch.Generator().manual_seed(i) for i in range(4)], SeedConfig()).numpy()
    for lab in (0, 1):
        want = np.stack([ndimage.binary_dilation(s == lab, np.ones((3, 3), bool)) for s in scaled])
        np.testing.assert_array_equal(plain == lab, want)
    assert scaled_erode_kernel(3, 96) == 1 and scaled_erode_kernel(3, 224) == 3
