"""Pooled dense CRF kernel vs a brute-force O(n^2) NumPy computation + gradcheck; ELB vs its piecewise formula.

(The lattice kernel, the default, is tested in test_crf_lattice.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcam_deploy.errors import InputError
from fcam_deploy.train.crf import POOLED_KERNEL_SCALE, CRFConfig, dense_crf_loss, exact_crf_value_and_grad
from fcam_deploy.train.elb import ELBConfig, ELBState, elb_penalty, size_loss
from fcam_deploy.train.losses import fcam_loss, seed_cross_entropy
from fcam_deploy.train.seeds import IGNORE_INDEX


def brute_force_crf(probs: np.ndarray, raw: np.ndarray, lam: float, s_rgb: float, s_xy: float) -> float:
    """-(lam/N) sum_n sum_k sum_{i,j} S_i W_ij S_j with an explicit double loop over pixel pairs (float64)."""
    n, k, h, w = probs.shape
    total = 0.0
    ys, xs = np.mgrid[:h, :w]
    pos = np.stack([xs.reshape(-1), ys.reshape(-1)], 1).astype(np.float64)
    for b in range(n):
        col = raw[b].reshape(3, -1).T.astype(np.float64)
        s = probs[b].reshape(k, -1).astype(np.float64)
        for i in range(h * w):
            d = ((pos - pos[i]) ** 2).sum(1) / (2 * s_xy**2) + ((col - col[i]) ** 2).sum(1) / (2 * s_rgb**2)
            wi = np.exp(-d)
            total += float((s[:, i : i + 1] * (s * wi[None, :])).sum())
    return -lam / n * total


def _inputs(n: int, h: int, w: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    probs = F.softmax(torch.randn(n, 2, h, w, generator=g, dtype=dtype) * 2, dim=1)
    raw = torch.rand(n, 3, h, w, generator=g, dtype=dtype) * 255
    raw[:, :, : h // 2] = raw[:, :, : h // 2] * 0.1 + 100  # some smooth region so W is not ~identity
    return probs, raw


@pytest.mark.parametrize("h,w,sxy", [(6, 7, 3.0), (8, 8, 100.0), (5, 9, 1.5)])
def test_exact_kernel_matches_brute_force(h: int, w: int, sxy: float) -> None:
    probs, raw = _inputs(2, h, w, seed=h * w)
    cfg = CRFConfig(lam=1e-3, sigma_rgb=15.0, sigma_xy=sxy, scale_sigma_xy=False, kernel="pooled", grid=None)
    got = float(dense_crf_loss(probs, raw, cfg))
    want = POOLED_KERNEL_SCALE * brute_force_crf(probs.numpy(), raw.numpy(), 1e-3, 15.0, sxy)
    assert got == pytest.approx(want, rel=1e-10)
    val, _ = exact_crf_value_and_grad(probs, raw, cfg, chunk=7)
    assert val == pytest.approx(want, rel=1e-10)


def test_pooled_kernel_matches_block_brute_force() -> None:
    # Pooled form = brute force on block means (position = block centre) times a^2 pair multiplicity.
    probs, raw = _inputs(1, 8, 8, seed=3)
    cfg = CRFConfig(lam=1e-2, sigma_xy=4.0, scale_sigma_xy=False, kernel="pooled", grid=4)
    got = float(dense_crf_loss(probs, raw, cfg))
    pp = F.avg_pool2d(probs, 2).numpy()
    rr = F.avg_pool2d(raw, 2).numpy()
    # Block centres are at 2*i + 0.5 in pixel units; brute_force uses integer grid positions, so rescale
    # sigma: distance between block centres = 2 * index distance.
    want = POOLED_KERNEL_SCALE * brute_force_crf(pp, rr, 1e-2 * 16, 15.0, 4.0 / 2)
    assert got == pytest.approx(want, rel=1e-10)


def test_gradient_equals_analytic_form_and_gradcheck() -> None:
    probs, raw = _inputs(2, 6, 6, seed=11)
    cfg = CRFConfig(lam=1e-2, sigma_xy=3.0, scale_sigma_xy=False, kernel="pooled", grid=None)
    p = probs.clone().requires_grad_(True)
    dense_crf_loss(p, raw, cfg).backward()
    _, g_exact = exact_crf_value_and_grad(probs, raw, cfg)  # -2 lam W S / N
    torch.testing.assert_close(p.grad, g_exact, rtol=1e-10, atol=1e-14)
    for grid in (None, 3):
        c = CRFConfig(lam=1e-2, sigma_xy=3.0, scale_sigma_xy=False, kernel="pooled", grid=grid)
        assert torch.autograd.gradcheck(lambda x, c=c: dense_crf_loss(x, raw, c), (probs.clone().requires_grad_(True),))
    # ...and through a softmax over logits, the way training uses it.
    logits = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: dense_crf_loss(F.softmax(z, 1), raw[:1], cfg), (logits,))


def test_pooled_approximation_is_close_on_smooth_images() -> None:
    # On a piecewise-constant image aligned to the blocks, pooling loses nothing but intra-block position.
    h = w = 24
    raw = torch.zeros(1, 3, h, w, dtype=torch.float64)
    raw[:, 0, :, :12] = 200.0
    raw[:, 2, :, 12:] = 180.0
    probs = F.softmax(F.avg_pool2d(torch.randn(1, 2, h, w, dtype=torch.float64), 3, 1, 1) * 4, 1)
    cfg = CRFConfig(lam=1.0, kernel="pooled", grid=None)
    exact, _ = exact_crf_value_and_grad(probs, raw, cfg)
    approx = float(dense_crf_loss(probs, raw, CRFConfig(lam=1.0, kernel="pooled", grid=6)))
    assert abs(approx - exact) / abs(exact) < 0.02


def test_crf_rejects_bad_shapes() -> None:
    with pytest.raises(InputError):
        dense_crf_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 5, 4))
    with pytest.raises(InputError):
        dense_crf_loss(torch.rand(2, 4, 4), torch.rand(1, 3, 4, 4))


def psi_ref(f: float, t: float) -> float:
    if f <= -1.0 / t**2:
        return -math.log(-f) / t
    return t * f - math.log(1.0 / t**2) / t + 1.0 / t


def dpsi_ref(f: float, t: float) -> float:
    return -1.0 / (t * f) if f <= -1.0 / t**2 else t


@pytest.mark.parametrize("t", [1.0, 1.01, 2.5, 10.0])
def test_elb_values_and_gradients(t: float) -> None:
    fs = [-500.0, -3.0, -1.0 / t**2 - 1e-6, -1.0 / t**2, -1.0 / t**2 + 1e-6, -1e-3, 0.0, 2.0, 40.0]
    x = torch.tensor(fs, dtype=torch.float64, requires_grad=True)
    y = elb_penalty(x, t)
    y.sum().backward()
    for f, v, g in zip(fs, y.tolist(), x.grad.tolist()):
        assert v == pytest.approx(psi_ref(f, t), rel=1e-9, abs=1e-12)
        assert g == pytest.approx(dpsi_ref(f, t), rel=1e-5)
    assert torch.isfinite(x.grad).all()


def test_size_loss_and_t_schedule() -> None:
    g = torch.Generator().manual_seed(0)
    probs = F.softmax(torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64), 1)
    sizes = probs.sum((2, 3)).tolist()
    want = 0.1 * 0.5 * (np.mean([psi_ref(-s[0], 1.3) for s in sizes]) + np.mean([psi_ref(-s[1], 1.3) for s in sizes]))
    assert float(size_loss(probs, 1.3, 0.1)) == pytest.approx(want, rel=1e-12)
    st, cfg = ELBState(t=1.0), ELBConfig()
    for _ in range(50):
        st.step_epoch(cfg)
    assert st.t == pytest.approx(1.01**50)
    for _ in range(500):
        st.step_epoch(cfg)
    assert st.t == 10.0
    with pytest.raises(InputError):
        size_loss(torch.rand(1, 3, 2, 2), 1.0)


def test_seed_ce_mean_over_labelled_pixels_of_batch() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    seeds = torch.full((2, 4, 4), IGNORE_INDEX)
    seeds[0, 0, 0], seeds[0, 1, 1], seeds[1, 2, 2] = 1, 0, 1
    logp = F.log_softmax(logits, 1)
    want = -(logp[0, 1, 0, 0] + logp[0, 0, 1, 1] + logp[1, 1, 2, 2]) / 3  # batch mean, not per-image mean
    assert float(seed_cross_entropy(logits, seeds)) == pytest.approx(float(want), rel=1e-12)
    none = seed_cross_entropy(logits.requires_grad_(True), torch.full((2, 4, 4), IGNORE_INDEX))
    assert float(none.detach()) == 0.0
    none.backward()
    parts = fcam_loss(
        logits,
        seeds,
        torch.rand(2, 3, 4, 4, dtype=torch.float64) * 255,
        seed_lambda=1.0,
        crf=CRFConfig(lam=1e-3, kernel="pooled"),
        elb_t=1.0,
        size_lambda=0.1,
    )
    assert float(parts.total) == pytest.approx(float(parts.seed + parts.crf + parts.size))
