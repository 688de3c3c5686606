"""Dense CRF loss of F-CAM (Tang et al.'s rloss, fcam-method.md §2.4(b)) on CPU and GPU, without a lattice.

Official value, per batch of N images with softmax maps S (N, 2, H, W) and raw RGB I (N, 3, H, W) in [0, 255]::

    L = lambda * ( -(1/N) * sum_n sum_k S_nk^T W_n S_nk ),   W_n(i, j) = exp(-|p_i-p_j|^2/(2 s_xy^2) - |I_i-I_j|^2/(2 s_rgb^2))

with an unnormalised kernel that includes the self pairs (the permutohedral bilateral filter of the official code).
Its gradient is ``dL/dS_nk = -2 * lambda * W_n S_nk / N``.

Instead of a permutohedral lattice this module evaluates the **exact** Gaussian kernel on a coarser grid: S and I
are average-pooled to ``g x g`` blocks of ``a = H*W/g^2`` pixels, block features are the block centre and mean
colour, and every block pair stands for its ``a^2`` pixel pairs::

    L_g = lambda * ( -(a^2/N) * sum_n sum_k s_nk^T W^g_n s_nk )

With ``grid=None`` (or ``g == H == W``) this *is* the exact full kernel, computed densely (use it only for small
images or to measure the approximation; :func:`exact_crf_value_and_grad` does it in chunks for larger ones).
The pooled form is what the trainers use: O((g^2)^2) per image, plain tensor ops, same code on CPU and CUDA. Its
gradient is an analytic custom ``autograd.Function`` (``-2*lambda*a^2*W s/N`` on the pooled maps, spread back by
the pooling's adjoint), checked by ``torch.autograd.gradcheck`` in the tests.

``sigma_xy`` is given at 224 px (official 100) and scaled with the image side when ``scale_sigma_xy`` is set, so
the kernel covers the same fraction of the image at the demo's smaller sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcam_deploy.errors import InputError

__all__ = ["CRFConfig", "bilateral_kernel", "dense_crf_loss", "exact_crf_value_and_grad", "pooled_features"]


@dataclass(frozen=True)
class CRFConfig:
    """Dense-CRF loss settings.

    Attributes:
        lam: weight of the loss in the official unnormalised convention (official 2e-9 at 224 px).
        sigma_rgb: colour bandwidth on raw [0, 255] RGB.
        sigma_xy: spatial bandwidth in pixels at 224 px.
        scale_sigma_xy: multiply ``sigma_xy`` by (image side / 224).
        grid: side g of the pooled grid the exact kernel is evaluated on; ``None`` = full resolution (exact).
    """

    lam: float = 2e-9
    sigma_rgb: float = 15.0
    sigma_xy: float = 100.0
    scale_sigma_xy: bool = True
    grid: int | None = None


def _check(probs: torch.Tensor, raw: torch.Tensor) -> None:
    if probs.ndim != 4 or raw.ndim != 4 or raw.shape[1] != 3:
        raise InputError(f"dense CRF expects probs (N,K,H,W) and raw RGB (N,3,H,W); got {tuple(probs.shape)}, "
                         f"{tuple(raw.shape)}")
    if probs.shape[0] != raw.shape[0] or probs.shape[2:] != raw.shape[2:]:
        raise InputError(f"dense CRF: probs {tuple(probs.shape)} and raw {tuple(raw.shape)} differ in N/H/W "
                         "(fix: give the raw RGB crop with the same geometry as the network input)")


def _sigma_xy(cfg: CRFConfig, h: int, w: int) -> float:
    return cfg.sigma_xy * (min(h, w) / 224.0) if cfg.scale_sigma_xy else cfg.sigma_xy


def pooled_features(raw: torch.Tensor, grid: tuple[int, int], sigma_xy: float, sigma_rgb: float) -> torch.Tensor:
    """Bilateral features of the g x g pooled grid: (N, g_h*g_w, 5) = (x/s_xy, y/s_xy, RGB/s_rgb).

    Positions are block centres in full-resolution pixel coordinates; colours are block means of ``raw``.
    """
    n, _, h, w = raw.shape
    gh, gw = grid
    rgb = F.adaptive_avg_pool2d(raw, (gh, gw)) if (gh, gw) != (h, w) else raw
    ys = (torch.arange(gh, dtype=raw.dtype, device=raw.device) + 0.5) * (h / gh) - 0.5
    xs = (torch.arange(gw, dtype=raw.dtype, device=raw.device) + 0.5) * (w / gw) - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pos = torch.stack([xx, yy], 0).reshape(2, -1).T / sigma_xy  # (g^2, 2)
    col = rgb.reshape(n, 3, -1).transpose(1, 2) / sigma_rgb  # (N, g^2, 3)
    return torch.cat([pos.unsqueeze(0).expand(n, -1, -1), col], dim=2)


def bilateral_kernel(feats: torch.Tensor) -> torch.Tensor:
    """W = exp(-|f_i - f_j|^2 / 2) for features (N, n, d) -> (N, n, n), self pairs included (W_ii = 1)."""
    sq = (feats * feats).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * feats @ feats.transpose(1, 2)
    return torch.exp(-0.5 * d2.clamp_min(0.0))


class _QuadForm(torch.autograd.Function):
    """value = -(c/N) * sum_{n,k} s_nk^T W_n s_nk with analytic gradient -2 c W s / N (W symmetric, no grad)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, kernel: torch.Tensor, coef: float) -> torch.Tensor:  # type: ignore[override]
        ws = torch.bmm(kernel, s.transpose(1, 2)).transpose(1, 2)  # (N, K, n)
        ctx.save_for_backward(ws)
        ctx.coef = coef
        n = s.shape[0]
        return -(coef / n) * (s * ws).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (ws,) = ctx.saved_tensors
        n = ws.shape[0]
        return grad * (-2.0 * ctx.coef / n) * ws, None, None


def dense_crf_loss(probs: torch.Tensor, raw: torch.Tensor, cfg: CRFConfig = CRFConfig()) -> torch.Tensor:
    """Dense CRF loss (already multiplied by ``cfg.lam``).

    Args:
        probs: (N, K, H, W) softmax probabilities (all K channels enter the sum), float32/64, with grad.
        raw: (N, 3, H, W) raw RGB in [0, 255] with the same geometry (no normalisation).
        cfg: settings; ``cfg.grid`` selects the pooled grid (None = exact at full resolution).

    Returns:
        scalar tensor (differentiable w.r.t. ``probs``).
    """
    _check(probs, raw)
    n, k, h, w = probs.shape
    g = (h, w) if cfg.grid is None else (min(cfg.grid, h), min(cfg.grid, w))
    area = (h * w) / (g[0] * g[1])
    with torch.no_grad():
        feats = pooled_features(raw.to(probs.dtype), g, _sigma_xy(cfg, h, w), cfg.sigma_rgb)
        kernel = bilateral_kernel(feats)
    s = F.adaptive_avg_pool2d(probs, g) if g != (h, w) else probs
    return _QuadForm.apply(s.reshape(n, k, -1), kernel, float(cfg.lam) * area * area)


def exact_crf_value_and_grad(
    probs: torch.Tensor, raw: torch.Tensor, cfg: CRFConfig = CRFConfig(), chunk: int = 2048
) -> tuple[float, torch.Tensor]:
    """The exact full-resolution dense CRF loss and its gradient w.r.t. ``probs``, row-chunked (O(n) memory).

    For measuring the pooled approximation on realistic sizes; float64 accumulation.

    Returns:
        ``(value, grad)`` with grad (N, K, H, W) = -2 * lam * W S / N.
    """
    _check(probs, raw)
    n, k, h, w = probs.shape
    feats = pooled_features(raw.double(), (h, w), _sigma_xy(cfg, h, w), cfg.sigma_rgb)
    s = probs.detach().double().reshape(n, k, -1)
    ws = torch.zeros_like(s)
    for i in range(n):
        f = feats[i]
        sq = (f * f).sum(-1)
        for r0 in range(0, f.shape[0], chunk):
            fr = f[r0 : r0 + chunk]
            d2 = (fr * fr).sum(-1)[:, None] + sq[None, :] - 2.0 * fr @ f.T
            ws[i, :, r0 : r0 + chunk] = (torch.exp(-0.5 * d2.clamp_min(0.0)) @ s[i].T).T
    value = -(cfg.lam / n) * float((s * ws).sum())
    grad = (-2.0 * cfg.lam / n) * ws
    return value, grad.reshape(n, k, h, w)
