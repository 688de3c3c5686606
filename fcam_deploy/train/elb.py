"""Extended log-barrier (Kervadec et al.) and F-CAM's absolute size constraint (docs/method.md §2.4(c)).

For a constraint ``f <= 0``::

    psi_t(f) = -(1/t) * log(-f)                      if f <= -1/t^2
             =  t*f - (1/t)*log(1/t^2) + 1/t          otherwise

(continuous with a continuous first derivative at f = -1/t^2). The size constraint applies it to
``f = -size_r`` for r in {background, foreground}, ``size_r(n) = sum_p S_nr(p)`` (soft area in pixels), and
``L_ASC = lam * 0.5 * (mean_n psi(-size_bg(n)) + mean_n psi(-size_fg(n)))``.
``t`` starts at 1, is multiplied by 1.01 at each epoch end and capped at 10; it lives in :class:`ELBState`
(saved with the training state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fcam_deploy.errors import InputError

__all__ = ["ELBConfig", "ELBState", "elb_penalty", "size_loss"]


@dataclass(frozen=True)
class ELBConfig:
    """ASC settings: weight ``lam``, initial ``t``, per-epoch multiplier and cap (official 0.1, 1, 1.01, 10)."""

    lam: float = 0.1
    init_t: float = 1.0
    mul: float = 1.01
    max_t: float = 10.0


@dataclass
class ELBState:
    """The mutable barrier parameter t (one per training run)."""

    t: float = 1.0

    def step_epoch(self, cfg: ELBConfig) -> None:
        """End-of-epoch update: ``t <- min(t * mul, max_t)``."""
        self.t = min(self.t * cfg.mul, cfg.max_t)


def elb_penalty(f: torch.Tensor, t: float) -> torch.Tensor:
    """Element-wise extended log-barrier psi_t(f) for the constraint f <= 0 (any shape, float)."""
    if t <= 0:
        raise InputError(f"ELB t must be > 0, got {t}")
    thr = -1.0 / (t * t)
    inside = f <= thr
    safe = torch.where(inside, f, torch.full_like(f, thr))
    barrier = -(1.0 / t) * torch.log(-safe)
    linear = t * f - (1.0 / t) * math.log(1.0 / (t * t)) + 1.0 / t
    return torch.where(inside, barrier, linear)


def size_loss(probs: torch.Tensor, t: float, lam: float = 0.1) -> torch.Tensor:
    """Absolute size constraint on softmax maps (N, 2, H, W) (channel 0 bg, 1 fg); returns a scalar."""
    if probs.ndim != 4 or probs.shape[1] != 2:
        raise InputError(f"size_loss expects (N, 2, H, W) probabilities, got {tuple(probs.shape)}")
    sizes = probs.sum(dim=(2, 3))  # (N, 2)
    return lam * 0.5 * (elb_penalty(-sizes[:, 0], t).mean() + elb_penalty(-sizes[:, 1], t).mean())
