"""F-CAM pseudo-label ("seed") sampler, as the official ``GetFastSeederSLFCAMS`` (docs/method.md §2.3, §7.7).

From the frozen classifier's upsampled, min-max normalised CAM ``C`` (N, H, W) in [0, 1] it draws, per image,
one foreground pixel from the eroded Otsu ROI and one background pixel from the lowest ``min_p`` fraction of
pixels by rank, dilates each with a ``dilate_k`` x ``dilate_k`` square, and returns a label map with
1 = foreground, 0 = background and :data:`IGNORE_INDEX` (-255) everywhere else (pixels drawn as both fg and bg
are ignored too). Seeds are redrawn on every call from the caller's :class:`torch.Generator`.

Details that matter (and are tested against an independent NumPy / scikit-image / SciPy oracle):

* ``cam_u8 = uint8(C * 255)`` by truncation; a constant ``cam_u8`` ("bad egg") gives an all-ignore image.
* Otsu threshold of ``cam_u8`` by :func:`skimage.filters.threshold_otsu`, clamped to [1, 254]; ROI = ``cam_u8 > t``.
* One erosion with an all-ones ``erode_k`` x ``erode_k`` kernel, out-of-image pixels neutral (the image border
  never erodes the ROI); if the erosion empties the ROI, the un-eroded ROI is kept.
* The official kernel is 11 x 11 at 224 px; :func:`scaled_erode_kernel` scales it with the image side (rounded
  to the nearest odd integer >= 1) so small demo images keep the same relative erosion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fcam_deploy.errors import InputError

__all__ = ["IGNORE_INDEX", "SeedConfig", "sample_seeds", "scaled_erode_kernel", "seed_roi"]

#: Label of pixels that carry no pseudo-label (the official ``seg_ignore_idx``).
IGNORE_INDEX: int = -255


@dataclass(frozen=True)
class SeedConfig:
    """Seed-sampler settings (official README values; ``erode_k`` is the 224-px kernel, see ``scaled_erode_kernel``).

    Attributes:
        n_fg: foreground pixels drawn per image (``sl_max``).
        n_bg: background pixels drawn per image (``sl_min``).
        min_p: fraction of pixels, lowest by rank, that are background candidates (``sl_min_p``).
        erode_k: erosion kernel side at 224 px (``sl_fg_erode_k``); scaled to the image size when sampling.
        erode_iter: erosion iterations (``sl_fg_erode_iter``).
        dilate_k: side of the square each drawn pixel is dilated with (``sl_ksz``).
        scale_erode_with_size: scale ``erode_k`` by image side / 224 (True) or use it as given (False).
        scale_dilate_with_size: scale ``dilate_k`` the same way (3 at 224 -> 1 at 96, i.e. single-pixel seeds).
    """

    n_fg: int = 1
    n_bg: int = 1
    min_p: float = 0.1
    erode_k: int = 11
    erode_iter: int = 1
    dilate_k: int = 3
    scale_erode_with_size: bool = True
    scale_dilate_with_size: bool = False


def scaled_erode_kernel(erode_k: int, side: int, reference_side: int = 224) -> int:
    """The erosion (or dilation) kernel for an image of ``side`` pixels: ``erode_k * side / reference_side`` rounded to the
    nearest odd integer, at least 1 (11 at 224 -> 5 at 96 -> 7 at 128 -> 3 at 64)."""
    k = erode_k * side / reference_side
    odd = int(2 * round((k - 1) / 2) + 1)
    return max(1, odd)


def _otsu_u8(cam_u8: np.ndarray) -> int:
    from skimage.filters import threshold_otsu

    t = float(threshold_otsu(cam_u8))
    return int(min(max(t, 1.0), 254.0))


def _erode(mask: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """Binary erosion (H, W) bool with a k x k all-ones kernel; out-of-image pixels are neutral."""
    if k <= 1 or iters <= 0:
        return mask
    x = (~mask).to(torch.float32)[None, None]
    for _ in range(iters):
        # max_pool2d pads with -inf, so pixels outside the image never count as background.
        x = F.max_pool2d(x, kernel_size=k, stride=1, padding=k // 2)
    return x[0, 0] < 0.5


def _dilate(mask: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 1:
        return mask
    x = mask.to(torch.float32)[None, None]
    return F.max_pool2d(x, kernel_size=k, stride=1, padding=k // 2)[0, 0] > 0.5


def seed_roi(cam: torch.Tensor, cfg: SeedConfig = SeedConfig()) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Foreground and background candidate masks of one map.

    Args:
        cam: (H, W) float in [0, 1].
        cfg: sampler settings.

    Returns:
        ``(fg_candidates, bg_candidates)`` as (H, W) bool tensors, or ``None`` for a constant uint8 map.
    """
    h, w = cam.shape
    cam_u8 = (cam.detach().to(torch.float32).clamp(0, 1) * 255).to(torch.uint8)  # truncation
    if int(cam_u8.min()) == int(cam_u8.max()):
        return None
    t = _otsu_u8(cam_u8.cpu().numpy())
    roi = cam_u8 > t
    k = scaled_erode_kernel(cfg.erode_k, min(h, w)) if cfg.scale_erode_with_size else cfg.erode_k
    eroded = _erode(roi, k, cfg.erode_iter)
    if bool(eroded.any()):
        roi = eroded
    n_low = int(cfg.min_p * h * w)
    flat = cam.detach().reshape(-1)
    order = torch.argsort(flat, stable=True)
    bg = torch.zeros(h * w, dtype=torch.bool, device=cam.device)
    bg[order[:n_low]] = True
    return roi, bg.reshape(h, w)


def _draw(cands: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.nonzero(cands.reshape(-1).cpu(), as_tuple=False)[:, 0]
    out = torch.zeros(cands.numel(), dtype=torch.bool)
    m = min(n, int(idx.numel()))
    if m > 0:
        pick = torch.randperm(int(idx.numel()), generator=gen)[:m]
        out[idx[pick]] = True
    return out.reshape(cands.shape)


def sample_seeds(
    cams: torch.Tensor,
    generators: torch.Generator | list[torch.Generator],
    cfg: SeedConfig = SeedConfig(),
) -> torch.Tensor:
    """Draw F-CAM seeds for a batch.

    Args:
        cams: (N, H, W) float maps in [0, 1] (the GT-class CAM, min-max normalised at low resolution, then
            bilinearly upsampled to the input size, align_corners=False).
        generators: one CPU :class:`torch.Generator` for the whole batch, or one per image (what the trainers
            use, so a sample's seeds do not depend on which batch or rank it lands in).
        cfg: sampler settings.

    Returns:
        (N, H, W) int64 labels on ``cams.device``: 1 fg, 0 bg, :data:`IGNORE_INDEX` elsewhere.

    Raises:
        InputError: wrong rank, non-finite values, or a generator list of the wrong length.
    """
    if cams.ndim != 3:
        raise InputError(f"sample_seeds expects maps of shape (N, H, W), got {tuple(cams.shape)}")
    if not bool(torch.isfinite(cams).all()):
        raise InputError("sample_seeds got NaN/inf in the CAMs (fix: nan_to_num the normalised CAM first)")
    n = cams.shape[0]
    gens = generators if isinstance(generators, list) else [generators] * n
    if len(gens) != n:
        raise InputError(f"sample_seeds got {len(gens)} generators for {n} maps")
    out = torch.full(cams.shape, IGNORE_INDEX, dtype=torch.int64)
    cams_cpu = cams.detach().cpu()
    side = min(cams.shape[1], cams.shape[2])
    dk = scaled_erode_kernel(cfg.dilate_k, side) if cfg.scale_dilate_with_size else cfg.dilate_k
    for i in range(n):
        cand = seed_roi(cams_cpu[i], cfg)
        if cand is None:
            continue
        fg = _dilate(_draw(cand[0], cfg.n_fg, gens[i]), dk)
        bg = _dilate(_draw(cand[1], cfg.n_bg, gens[i]), dk)
        lab = out[i]
        lab[fg & ~bg] = 1
        lab[bg & ~fg] = 0
    return out.to(cams.device)
