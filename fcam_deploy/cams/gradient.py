"""General (autograd) formulas of the gradient CAM methods, as the PyPI ``grad-cam`` package computes them
(docs/protocol.md §4.3). They take the activations ``A`` and the gradients ``g = d y_c / d A`` of any target
layer; the extractors in :mod:`fcam_deploy.cams.extractors` obtain ``g`` with ``torch.autograd.grad``.

All return ``(N, h, w)`` maps with the package's base ReLU applied (before normalisation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fcam_deploy.cams._core import GRADCAMPP_EPS, XGRADCAM_EPS, channel_weighted_sum

__all__ = ["GRADIENT_FORMULAS", "gradcam_map", "gradcampp_map", "layercam_map", "xgradcam_map"]


def gradcam_map(a: Tensor, g: Tensor) -> Tensor:
    """GradCAM: ``w_k = mean_ij g_k``; ``ReLU(sum_k w_k A_k)``. ``a``, ``g``: ``(N, C, h, w)``."""
    return torch.relu(channel_weighted_sum(g.mean(dim=(2, 3)), a))


def gradcampp_map(a: Tensor, g: Tensor) -> Tensor:
    """GradCAM++: ``alpha = g^2 / (2 g^2 + S_k g^3 + 1e-6)`` (0 where g = 0), ``w_k = sum_ij ReLU(g) alpha``."""
    s = a.sum(dim=(2, 3), keepdim=True)
    g2 = g * g
    alpha = g2 / (2.0 * g2 + s * (g2 * g) + GRADCAMPP_EPS)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(g) * alpha).sum(dim=(2, 3))
    return torch.relu(channel_weighted_sum(weights, a))


def xgradcam_map(a: Tensor, g: Tensor) -> Tensor:
    """XGradCAM: ``w_k = sum_ij g_k A_k / (S_k + 1e-7)``."""
    s = a.sum(dim=(2, 3))
    weights = (g * a).sum(dim=(2, 3)) / (s + XGRADCAM_EPS)
    return torch.relu(channel_weighted_sum(weights, a))


def layercam_map(a: Tensor, g: Tensor) -> Tensor:
    """LayerCAM: ``ReLU(sum_k ReLU(g_k(i,j)) A_k(i,j))`` (element-wise weights)."""
    return torch.relu((torch.relu(g) * a).sum(dim=1))


GRADIENT_FORMULAS = {
    "gradcam": gradcam_map,
    "gradcampp": gradcampp_map,
    "xgradcam": xgradcam_map,
    "layercam": layercam_map,
}
