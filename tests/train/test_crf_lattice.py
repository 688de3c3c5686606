"""The native lattice filter and the F-CAM dense CRF loss built on it, against independent references:

* the official filter's stored outputs (sbelharbi/fcam-wsol, compiled locally; tests/train/data/README.md);
* an exact dense Gaussian written here in NumPy (cosine >= 0.99; the lattice/exact scale is reported);
* the adjoint identity and finite differences for the filter's gradient; the official CRF gradient
  ``-2 lam W S / N`` against the value's finite differences and against the exact dense formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcam_deploy.errors import BackendUnavailableError, ConfigError, InputError
from fcam_deploy.ops.lattice import lattice_status
from fcam_deploy.train.crf import (
    POOLED_KERNEL_SCALE,
    CRFConfig,
    dense_crf_loss,
    exact_crf_value_and_grad,
    lattice_filter,
)

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.skipif(
    not lattice_status().available,
    reason=f"needs the native lattice filter ({lattice_status().reason}; run `make kernels`)",
)


def dense_gaussian(images: np.ndarray, values: np.ndarray, s_rgb: float, s_xy: float) -> np.ndarray:
    """sum_q exp(-|p-q|^2/(2 s_xy^2) - |I_p-I_q|^2/(2 s_rgb^2)) v_q, float64, written out with NumPy."""
    n, c, h, w = values.shape
    ys, xs = np.mgrid[:h, :w]
    out = np.zeros(values.shape, np.float64)
    for b in range(n):
        f = np.concatenate([np.stack([xs.ravel(), ys.ravel()]) / s_xy, images[b].reshape(3, -1) / s_rgb]).T
        d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
        out[b] = (np.exp(-0.5 * d2) @ values[b].reshape(c, -1).T.astype(np.float64)).T.reshape(c, h, w)
    return out


def _scene(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Piecewise-constant colour regions (an ellipse on a two-tone background) + noise, and soft 2-class maps."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    imgs, maps = [], []
    for _ in range(n):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w]) * 0.5 + torch.tensor([h, w]) * 0.25
        inside = ((ys - cy) / (0.3 * h)) ** 2 + ((xs - cx) / (0.35 * w)) ** 2 <= 1.0
        cols = torch.rand(3, 3, generator=g) * 255
        img = torch.where(
            inside, cols[0][:, None, None], torch.where(xs < w / 2, cols[1][:, None, None], cols[2][:, None, None])
        )
        imgs.append((img + torch.randn(3, h, w, generator=g) * 4).clamp(0, 255))
        fg = torch.sigmoid(4 * (inside.float() - 0.5) + torch.randn(h, w, generator=g))
        maps.append(torch.stack([1 - fg, fg]))
    return torch.stack(imgs), torch.stack(maps)


def test_matches_the_official_filter_on_stored_inputs() -> None:
    d = np.load(DATA / "official_lattice.npz")
    summary = json.loads((DATA / "official_lattice.json").read_text())
    images = torch.from_numpy(d["images"].astype(np.float32))
    values = torch.from_numpy(d["values"].astype(np.float32))
    for i, (s_rgb, s_xy) in enumerate(d["sigmas"].tolist()):
        ref = d[f"official_{i}"]
        got = lattice_filter(images, values, s_rgb, s_xy).numpy()
        scale = float((got * ref).sum() / (ref * ref).sum())
        assert abs(scale - 1.0) < 0.10  # the criterion ...
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())  # ... and far tighter
        exact = dense_gaussian(d["images"].astype(np.float64), d["values"].astype(np.float32), s_rgb, s_xy)
        s_exact = float((got * exact).sum() / (exact * exact).sum())
        assert s_exact == pytest.approx(summary["settings"][i]["official_vs_exact_gaussian_scale"], abs=2e-3)


@pytest.mark.parametrize("s_rgb,s_xy", [(15.0, 100.0), (15.0, 5.0), (8.0, 3.0), (40.0, 2.0)])
def test_close_to_the_exact_dense_gaussian(s_rgb: float, s_xy: float, record_property) -> None:
    images, maps = _scene(2, 18, 23, seed=int(s_xy * 10))
    got = lattice_filter(images, maps, s_rgb, s_xy).double().numpy()
    want = dense_gaussian(images.double().numpy(), maps.numpy(), s_rgb, s_xy)
    cos = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
    scale = float((got * want).sum() / (want * want).sum())
    record_property("lattice_vs_exact", {"sigma_rgb": s_rgb, "sigma_xy": s_xy, "cosine": cos, "scale": scale})
    assert cos >= 0.99
    assert 0.45 < scale < 0.75


def test_gradient_is_the_exact_adjoint() -> None:
    images, _ = _scene(3, 14, 17, seed=4)
    g = torch.Generator().manual_seed(9)
    v = torch.rand(3, 3, 14, 17, generator=g).requires_grad_(True)
    up = torch.randn(3, 3, 14, 17, generator=g)
    out = lattice_filter(images, v, 12.0, 4.0)
    (out * up).sum().backward()
    # Finite differences of the (linear) map along random directions: exact up to float32 rounding.
    for k in range(3):
        dv = torch.randn(v.shape, generator=g)
        with torch.no_grad():
            fd = (
                (lattice_filter(images, v + dv, 12.0, 4.0) - lattice_filter(images, v - dv, 12.0, 4.0)) * up
            ).sum() / 2
        assert float((v.grad * dv).sum()) == pytest.approx(float(fd), rel=2e-4)
    # The forward W is not exactly symmetric (lattice blur order): W^T differs from W slightly.
    wt_up = v.grad
    w_up = lattice_filter(images, up, 12.0, 4.0)
    cos = float((wt_up * w_up).sum() / wt_up.norm() / w_up.norm())
    assert 0.98 < cos < 1.0 - 1e-6


def test_crf_loss_value_and_official_gradient() -> None:
    images, maps = _scene(2, 16, 21, seed=6)
    lam = 1e-3
    cfg = CRFConfig(lam=lam, sigma_xy=5.0, scale_sigma_xy=False)
    p = maps.clone().requires_grad_(True)
    loss = dense_crf_loss(p, images, cfg)
    loss.backward()
    ws = lattice_filter(images, maps, 15.0, 5.0)
    assert float(loss.detach()) == pytest.approx(-lam / 2 * float((maps.double() * ws.double()).sum()), rel=1e-6)
    torch.testing.assert_close(p.grad, -2 * lam / 2 * ws, rtol=1e-6, atol=1e-9)
    # Finite differences of the value equal the true gradient -(lam/N)(W + W^T) S (W^T via the adjoint) ...
    v = maps.clone().requires_grad_(True)
    (lattice_filter(images, v, 15.0, 5.0) * maps).sum().backward()
    true_grad = -lam / 2 * (ws + v.grad)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        d = torch.randn(maps.shape, generator=g) * 0.05
        with torch.no_grad():
            fd = (dense_crf_loss(maps + d, images, cfg) - dense_crf_loss(maps - d, images, cfg)) / 2
        assert float((true_grad * d).sum()) == pytest.approx(float(fd), rel=2e-3)
    # ... and the official gradient (which takes W as symmetric) points the same way.
    cos = float((p.grad * true_grad).sum() / p.grad.norm() / true_grad.norm())
    assert cos >= 0.995
    # Against the exact dense formula (-2 lam c W_exact S / N, c = POOLED_KERNEL_SCALE): same direction.
    _, g_exact = exact_crf_value_and_grad(maps.double(), images.double(), cfg)
    cos = float((p.grad.double() * g_exact).sum() / p.grad.double().norm() / g_exact.norm())
    assert cos >= 0.99
    ratio = float(p.grad.double().norm() / g_exact.norm())
    assert 0.7 < ratio < 1.4  # lattice scale / POOLED_KERNEL_SCALE


def test_crf_loss_trains_through_softmax_and_scale_option() -> None:
    images, maps = _scene(2, 24, 24, seed=8)
    logits = torch.log(maps).requires_grad_(True)
    cfg = CRFConfig(lam=1e-4, scale=0.5)
    loss = dense_crf_loss(F.softmax(logits, 1), images, cfg)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # scale=0.5 == the official resize (nearest image, bilinear maps) then the filter with sigma_xy halved.
    small_i = F.interpolate(images, scale_factor=0.5, mode="nearest", recompute_scale_factor=False)
    small_m = F.interpolate(maps, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    ws = lattice_filter(small_i, small_m, 15.0, 100.0 * 24 / 224 * 0.5)
    assert float(dense_crf_loss(maps, images, cfg)) == pytest.approx(-1e-4 / 2 * float((small_m * ws).sum()), rel=1e-5)


def test_pooled_kernel_uses_the_lattice_meaning_of_lambda() -> None:
    images, maps = _scene(2, 12, 12, seed=1)
    lat = float(dense_crf_loss(maps, images, CRFConfig(lam=1.0)))
    pooled = float(dense_crf_loss(maps.double(), images.double(), CRFConfig(lam=1.0, kernel="pooled")))
    assert pooled == pytest.approx(lat, rel=0.15)
    assert POOLED_KERNEL_SCALE == pytest.approx(0.55)


def test_threads_do_not_change_the_result() -> None:
    images, maps = _scene(4, 20, 20, seed=3)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lattice_filter(images, maps, 15.0, 9.0)
        torch.set_num_threads(max(2, n))
        many = lattice_filter(images, maps, 15.0, 9.0)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, many)


def test_typed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    images, maps = _scene(1, 8, 8, seed=0)
    with pytest.raises(InputError, match="float32"):
        lattice_filter(images.double(), maps.double(), 15.0, 5.0)
    with pytest.raises(InputError, match="differ"):
        lattice_filter(images[:, :, :7], maps, 15.0, 5.0)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        lattice_filter(images[:, :2], maps, 15.0, 5.0)
    with pytest.raises(InputError, match="sigma_xy"):
        lattice_filter(images, maps, 15.0, 0.0)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        lattice_filter(bad, maps, 15.0, 5.0)
    with pytest.raises(InputError, match="out of range"):
        lattice_filter(images, maps, 0.01, 5.0)
    with pytest.raises(ConfigError, match="grid"):
        CRFConfig(grid=12)
    import fcam_deploy.ops.lattice as lat

    monkeypatch.setattr(
        lat,
        "lattice_status",
        lambda: lat.LatticeStatus(False, False, "fcam_deploy/_C.so is not built (run `make kernels`)"),
    )
    with pytest.raises(BackendUnavailableError, match="make kernels"):
        lattice_filter(images, maps, 15.0, 5.0)


@pytest.mark.skipif(
    not torch.cuda.is_available() or not lattice_status().cuda,
    reason="needs a CUDA GPU and the extension built with CUDA",
)
def test_cuda_matches_cpu() -> None:  # pragma: no cover - no GPU in CI
    images, maps = _scene(5, 33, 47, seed=12)
    cpu = lattice_filter(images, maps, 15.0, 7.0)
    gpu = lattice_filter(images.cuda(), maps.cuda(), 15.0, 7.0).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4 * float(cpu.abs().max()))


def test_scale_lam_with_size() -> None:
    images, maps = _scene(2, 112, 112, seed=5)
    base = float(dense_crf_loss(maps, images, CRFConfig(lam=1e-9)))
    scaled = float(dense_crf_loss(maps, images, CRFConfig(lam=1e-9, scale_lam_with_size=True)))
    assert scaled == pytest.approx(base * (224 / 112) ** 4, rel=1e-9)
    images, maps = _scene(1, 224, 224, seed=5)
    assert float(dense_crf_loss(maps, images, CRFConfig(scale_lam_with_size=True))) == pytest.approx(
        float(dense_crf_loss(maps, images, CRFConfig())), rel=1e-12
    )
