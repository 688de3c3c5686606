"""F-CAM stage-2 objective: seed cross-entropy + dense CRF + absolute size constraint (docs/method.md §2.4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcam_deploy.train.crf import CRFConfig, dense_crf_loss
from fcam_deploy.train.elb import size_loss
from fcam_deploy.train.seeds import IGNORE_INDEX

__all__ = ["FCAMLoss", "fcam_loss", "seed_cross_entropy"]


def seed_cross_entropy(seg_logits: torch.Tensor, seeds: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Partial cross-entropy averaged over the labelled pixels of the **whole batch** (pitfall 8).

    Args:
        seg_logits: (N, 2, H, W) logits.
        seeds: (N, H, W) int64 in {0, 1, IGNORE_INDEX}.
        normalizer: divide the summed CE by this instead of the local labelled-pixel count (DDP: the global
            count / world size, so that DDP's gradient averaging yields the mean over the global batch).

    Returns:
        scalar; exactly 0 (with a graph) when no pixel is labelled (instead of PyTorch's NaN).
    """
    n_lab = int((seeds != IGNORE_INDEX).sum())
    if n_lab == 0 or (normalizer is not None and normalizer <= 0):
        return seg_logits.sum() * 0.0
    total = F.cross_entropy(seg_logits, seeds, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (float(n_lab) if normalizer is None else float(normalizer))


@dataclass(frozen=True)
class FCAMLoss:
    """The three terms and their sum, all scalars (already weighted)."""

    total: torch.Tensor
    seed: torch.Tensor
    crf: torch.Tensor
    size: torch.Tensor


def fcam_loss(
    seg_logits: torch.Tensor,
    seeds: torch.Tensor,
    raw: torch.Tensor,
    *,
    seed_lambda: float,
    crf: CRFConfig,
    elb_t: float,
    size_lambda: float,
    seed_normalizer: float | None = None,
) -> FCAMLoss:
    """L = seed_lambda * CE(seeds) + CRF(softmax, raw) + size_lambda * ASC_t(softmax).

    Args:
        seg_logits: (N, 2, H, W) decoder logits (channel 1 = foreground).
        seeds: (N, H, W) pseudo-labels from :func:`fcam_deploy.train.seeds.sample_seeds`.
        raw: (N, 3, H, W) raw RGB in [0, 255], same geometry.
    """
    probs = F.softmax(seg_logits, dim=1)
    l_seed = seed_lambda * seed_cross_entropy(seg_logits, seeds, seed_normalizer)
    l_crf = dense_crf_loss(probs, raw, crf) if crf.lam > 0 else probs.sum() * 0.0
    l_size = size_loss(probs, elb_t, size_lambda) if size_lambda > 0 else probs.sum() * 0.0
    return FCAMLoss(total=l_seed + l_crf + l_size, seed=l_seed, crf=l_crf, size=l_size)
