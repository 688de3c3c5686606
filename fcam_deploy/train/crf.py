"""Dense CRF loss of F-CAM (Tang et al.'s rloss, docs/method.md §2.4(b)) as the official code computes it.

Official value, per batch of N images with softmax maps S (N, K, H, W) and raw RGB I (N, 3, H, W) in [0, 255]::

    L = lambda * ( -(1/N) * sum_n sum_k S_nk^T W_n S_nk )

where ``W_n S`` is the **permutohedral-lattice bilateral filter** (Adams et al. 2010) of S over the features
(x/s_xy, y/s_xy, RGB/s_rgb): unnormalised, self pairs included, about 0.55 x the exact Gaussian
``exp(-|f_i - f_j|^2 / 2)`` (measured: ``benchmarks/crf``). The official backward is ``dL/dS = -2 lambda W S / N``
(it treats W as symmetric; the lattice's W is symmetric only up to ~0.3 %, see ``fcam_deploy/train/README.md``).
``lambda = 2e-9`` therefore means here exactly what it means in the official code.

Two kernels (:class:`CRFConfig` ``kernel``):

* ``"lattice"`` (default): the native lattice filter (:func:`lattice_filter`, C++ on the CPU with threads over
  images, CUDA on GPUs; ``make kernels`` builds it) at the full training resolution, bit-identical to the official
  filter on the CPU (tests/train/test_crf_lattice.py). ``scale`` < 1 downsamples image (nearest) and maps (bilinear)
  first, as the official ``crf_scale`` does.
* ``"pooled"``: no native code. S and I are average-pooled to ``grid x grid`` blocks and the **exact** Gaussian on
  block centres / mean colours is evaluated densely, every block pair standing for its ``a^2`` pixel pairs, times
  :data:`POOLED_KERNEL_SCALE` so that lambda keeps the lattice's meaning; ``grid=None`` is the exact kernel at full
  resolution (O(n^2) memory: small images only). Analytic custom backward, gradchecked.

``sigma_xy`` is given at 224 px (official 100) and scaled with the image side when ``scale_sigma_xy`` is set, so
the kernel covers the same fraction of the image at smaller sizes (a no-op at 224).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fcam_deploy.errors import ConfigError, InputError

__all__ = [
    "POOLED_KERNEL_SCALE",
    "CRFConfig",
    "bilateral_kernel",
    "dense_crf_loss",
    "exact_crf_value_and_grad",
    "lattice_filter",
    "pooled_features",
]

#: Ratio lattice / exact Gaussian (least squares over filtered soft maps): 0.545 (sigma 15 / 100) and 0.571
#: (8 / 6) on 40x56 crops of the synthetic images, with the official filter (tests/train/data/official_lattice.json);
#: the ``"pooled"`` kernel multiplies the exact Gaussian by it so that lambda means the same for both kernels.
POOLED_KERNEL_SCALE = 0.55

_KERNELS = ("lattice", "pooled")


@dataclass(frozen=True)
class CRFConfig:
    """Dense-CRF loss settings.

    Attributes:
        lam: weight of the loss in the official convention (official 2e-9 at 224 px).
        sigma_rgb: colour bandwidth on raw [0, 255] RGB (official 15).
        sigma_xy: spatial bandwidth in pixels at 224 px (official 100).
        scale_sigma_xy: multiply ``sigma_xy`` by (image side / 224).
        scale_lam_with_size: multiply ``lam`` by (224 / image side)^4. With ``scale_sigma_xy`` the kernel covers the
            same fraction of the image at any size, so the sum over pixel pairs (the loss and its total gradient)
            shrinks as side^4 while the seed loss does not: this keeps the official CRF / seed balance at a smaller
            training size (measured at 96 px: ratio of the L1 gradient norms w.r.t. the logits 0.076 vs 0.080 for
            the official setting at 224; 0.0025 without it). A no-op at 224.
        kernel: ``"lattice"`` (official permutohedral filter, native) or ``"pooled"`` (exact Gaussian on a grid).
        grid: ``"pooled"`` only: side g of the pooled grid; ``None`` = full resolution (exact).
        scale: official ``crf_scale``: image and maps are resized by this factor before the filter (and sigma_xy
            with them); 1 = full training resolution.
    """

    lam: float = 2e-9
    sigma_rgb: float = 15.0
    sigma_xy: float = 100.0
    scale_sigma_xy: bool = True
    scale_lam_with_size: bool = False
    kernel: str = "lattice"
    grid: int | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel not in _KERNELS:
            raise ConfigError(f"crf.kernel must be one of {_KERNELS}, got {self.kernel!r}")
        if self.grid is not None and (self.kernel != "pooled" or self.grid < 1):
            raise ConfigError(
                f"crf.grid={self.grid!r}: a grid (>= 1) applies to kernel 'pooled' only "
                "(the lattice runs at the full resolution; use crf.scale to downsample)"
            )
        if not 0.0 < self.scale <= 1.0:
            raise ConfigError(f"crf.scale must be in (0, 1], got {self.scale!r}")
        if self.sigma_rgb <= 0 or self.sigma_xy <= 0:
            raise ConfigError("crf.sigma_rgb and crf.sigma_xy must be > 0")


def _check(probs: torch.Tensor, raw: torch.Tensor) -> None:
    if probs.ndim != 4 or raw.ndim != 4 or raw.shape[1] != 3:
        raise InputError(
            f"dense CRF expects probs (N,K,H,W) and raw RGB (N,3,H,W); got {tuple(probs.shape)}, {tuple(raw.shape)}"
        )
    if probs.shape[0] != raw.shape[0] or probs.shape[2:] != raw.shape[2:]:
        raise InputError(
            f"dense CRF: probs {tuple(probs.shape)} and raw {tuple(raw.shape)} differ in N/H/W "
            "(fix: give the raw RGB crop with the same geometry as the network input)"
        )


def _sigma_xy(cfg: CRFConfig, h: int, w: int) -> float:
    return cfg.sigma_xy * (min(h, w) / 224.0) if cfg.scale_sigma_xy else cfg.sigma_xy


def _lam(cfg: CRFConfig, h: int, w: int) -> float:
    return float(cfg.lam) * (224.0 / min(h, w)) ** 4 if cfg.scale_lam_with_size else float(cfg.lam)


class _LatticeFilter(torch.autograd.Function):
    """out = W values; grad_values = W^T grad (the lattice with its blur axes in reverse order, exact)."""

    @staticmethod
    def forward(
        ctx: Any, images: torch.Tensor, values: torch.Tensor, sigma_rgb: float, sigma_xy: float
    ) -> torch.Tensor:
        from fcam_deploy.ops.lattice import lattice_filter_op

        ctx.save_for_backward(images)
        ctx.sigmas = (sigma_rgb, sigma_xy)
        return lattice_filter_op(images, values, sigma_rgb, sigma_xy)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor | None, None, None]:
        from fcam_deploy.ops.lattice import lattice_filter_op

        (images,) = ctx.saved_tensors
        g = None
        if ctx.needs_input_grad[1]:
            sigma_rgb, sigma_xy = ctx.sigmas
            g = lattice_filter_op(images, grad.contiguous(), sigma_rgb, sigma_xy, adjoint=True)
        return None, g, None, None


def lattice_filter(images: torch.Tensor, values: torch.Tensor, sigma_rgb: float, sigma_xy: float) -> torch.Tensor:
    """Permutohedral-lattice bilateral filter of ``values`` guided by ``images`` (the official CRF's filter).

    ``out[n, c, p] = sum_q W_n(p, q) values[n, c, q]`` with ``W_n`` the lattice approximation (about 0.55 x) of
    ``exp(-|p - q|^2 / (2 sigma_xy^2) - |I_p - I_q|^2 / (2 sigma_rgb^2))``, self pairs included, unnormalised.

    Args:
        images: (N, 3, H, W) float32 RGB in [0, 255] (raw, not normalised); no gradient flows to it.
        values: (N, C, H, W) float32, same N/H/W and device.
        sigma_rgb: colour bandwidth (RGB units), > 0.
        sigma_xy: spatial bandwidth (pixels), > 0.

    Returns:
        (N, C, H, W) float32. Differentiable w.r.t. ``values`` (exact adjoint). CUDA tensors run the CUDA kernel
        when the extension has it (``fcam_deploy.ops.lattice.lattice_status().cuda``), else the CPU one.

    Raises:
        InputError: bad shapes/dtypes/sigmas, non-finite images, or coordinates out of the lattice's range.
        BackendUnavailableError: the native extension is not built (fix: ``make kernels``).
    """
    return _LatticeFilter.apply(images, values, float(sigma_rgb), float(sigma_xy))


class _LatticeCRF(torch.autograd.Function):
    """value = -(c/N) sum S * (W S), official gradient -2 c W S / N (as sbelharbi/fcam-wsol dense_crf_loss.py)."""

    @staticmethod
    def forward(
        ctx: Any, probs: torch.Tensor, raw: torch.Tensor, sigma_rgb: float, sigma_xy: float, coef: float
    ) -> torch.Tensor:
        from fcam_deploy.ops.lattice import lattice_filter_op

        s = probs.detach().to(torch.float32).contiguous()
        ws = lattice_filter_op(raw.detach().to(torch.float32).contiguous(), s, sigma_rgb, sigma_xy)
        ctx.save_for_backward(ws)
        ctx.coef = coef
        ctx.dtype = probs.dtype
        n = probs.shape[0]
        return (-(coef / n) * (s.double() * ws.double()).sum()).to(probs.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        (ws,) = ctx.saved_tensors
        n = ws.shape[0]
        return (grad * (-2.0 * ctx.coef / n) * ws).to(ctx.dtype), None, None, None, None


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
    def forward(ctx: Any, s: torch.Tensor, kernel: torch.Tensor, coef: float) -> torch.Tensor:
        ws = torch.bmm(kernel, s.transpose(1, 2)).transpose(1, 2)  # (N, K, n)
        ctx.save_for_backward(ws)
        ctx.coef = coef
        n = s.shape[0]
        return -(coef / n) * (s * ws).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (ws,) = ctx.saved_tensors
        n = ws.shape[0]
        return grad * (-2.0 * ctx.coef / n) * ws, None, None


def dense_crf_loss(probs: torch.Tensor, raw: torch.Tensor, cfg: CRFConfig = CRFConfig()) -> torch.Tensor:
    """Dense CRF loss (already multiplied by ``cfg.lam``).

    Args:
        probs: (N, K, H, W) softmax probabilities (all K channels enter the sum), float32/64, with grad.
        raw: (N, 3, H, W) raw RGB in [0, 255] with the same geometry (no normalisation).
        cfg: settings; ``cfg.kernel`` selects the official lattice (default) or the pooled exact kernel.

    Returns:
        scalar tensor of ``probs``' dtype, differentiable w.r.t. ``probs`` (official gradient ``-2 lam W S / N``).

    Raises:
        InputError: shapes differ; BackendUnavailableError: kernel "lattice" without the native extension.
    """
    _check(probs, raw)
    n, k, h, w = probs.shape
    sigma_xy = _sigma_xy(cfg, h, w) * cfg.scale
    lam = _lam(cfg, h, w)
    if cfg.scale != 1.0:  # the official crf_scale: nearest for the image, bilinear for the maps
        raw = F.interpolate(raw, scale_factor=cfg.scale, mode="nearest", recompute_scale_factor=False)
        probs = F.interpolate(
            probs, scale_factor=cfg.scale, mode="bilinear", align_corners=False, recompute_scale_factor=False
        )
        h, w = probs.shape[-2:]
    if cfg.kernel == "lattice":
        return _LatticeCRF.apply(probs, raw, float(cfg.sigma_rgb), float(sigma_xy), lam)
    g = (h, w) if cfg.grid is None else (min(cfg.grid, h), min(cfg.grid, w))
    area = (h * w) / (g[0] * g[1])
    with torch.no_grad():
        feats = pooled_features(raw.to(probs.dtype), g, sigma_xy, cfg.sigma_rgb)
        kernel = bilateral_kernel(feats)
    s = F.adaptive_avg_pool2d(probs, g) if g != (h, w) else probs
    return _QuadForm.apply(s.reshape(n, k, -1), kernel, lam * POOLED_KERNEL_SCALE * area * area)


def exact_crf_value_and_grad(
    probs: torch.Tensor,
    raw: torch.Tensor,
    cfg: CRFConfig = CRFConfig(),
    chunk: int = 2048,
    kernel_scale: float = POOLED_KERNEL_SCALE,
) -> tuple[float, torch.Tensor]:
    """The dense CRF loss with the exact Gaussian at full resolution and its gradient, row-chunked (O(n) memory).

    ``kernel_scale`` multiplies the kernel (default :data:`POOLED_KERNEL_SCALE`, i.e. the ``"pooled"`` kernel with
    ``grid=None``; 1.0 = the plain Gaussian). For measuring the lattice / pooled kernels on realistic sizes;
    float64 accumulation; ``cfg.kernel``, ``cfg.grid`` and ``cfg.scale`` are ignored.

    Returns:
        ``(value, grad)`` with grad (N, K, H, W) = -2 * lam * kernel_scale * W S / N.
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
    ws = ws * kernel_scale
    lam = _lam(cfg, h, w)
    value = -(lam / n) * float((s * ws).sum())
    grad = (-2.0 * lam / n) * ws
    return value, grad.reshape(n, k, h, w)
