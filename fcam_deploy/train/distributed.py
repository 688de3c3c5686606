"""DistributedDataParallel helpers (torchrun / env:// or an explicit init method), incl. a CPU SyncBatchNorm.

``torch.nn.SyncBatchNorm`` only runs on GPUs. :class:`CPUSyncBatchNorm` does the same on any device with any
backend (gloo): it all-reduces the per-channel sum, sum of squares and count through the differentiable
``torch.distributed.nn.functional.all_reduce``, so forward statistics and backward gradients are those of one
batch holding every rank's samples. With it, N ranks x B images reproduce 1 process x N*B images up to
floating-point summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["CPUSyncBatchNorm", "DistInfo", "convert_sync_batchnorm", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and whether a process group is active."""

    rank: int = 0
    world_size: int = 1
    active: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(
    backend: str | None = None, init_method: str | None = None, rank: int | None = None, world_size: int | None = None
) -> DistInfo:
    """Join a process group when launched by torchrun (``WORLD_SIZE`` > 1) or when ``init_method`` is given.

    Backend default: nccl with CUDA, gloo otherwise. Returns a single-process :class:`DistInfo` otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), True)
    ws = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1 and init_method is None:
        return DistInfo()
    be = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    rk = rank if rank is not None else int(os.environ.get("RANK", "0"))
    dist.init_process_group(be, init_method=init_method or "env://", rank=rk, world_size=ws)
    return DistInfo(dist.get_rank(), dist.get_world_size(), True)


def _sync_bn(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm of x (N, C, ...) with statistics all-reduced over every rank (differentiable)."""
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    dims = [0] + list(range(2, x.dim()))
    cnt = torch.full((1,), float(x.numel() // c), dtype=x.dtype, device=x.device)
    stats = all_reduce(torch.cat([x.sum(dim=dims), (x * x).sum(dim=dims), cnt]))
    total = stats[-1]
    mean = stats[:c] / total
    var = stats[c : 2 * c] / total - mean * mean
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            mom = bn.momentum if bn.momentum is not None else 0.1
            unbiased = var * total / (total - 1).clamp_min(1)
            bn.running_mean.mul_(1 - mom).add_(mom * mean.detach())
            bn.running_var.mul_(1 - mom).add_(mom * unbiased.detach())
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
    shape = [1, c] + [1] * (x.dim() - 2)
    y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y


def _syncing(bn: nn.Module) -> bool:
    return bool(bn.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


class _SyncMixin:
    """Mixed in front of a BatchNorm class: cross-rank statistics in training mode; then, for timm's
    ``BatchNormAct2d``, its dropout and activation (``drop`` / ``act`` attributes) as the original forward does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _syncing(self):  # type: ignore[arg-type]
            return super().forward(x)  # type: ignore[misc]
        y = _sync_bn(self, x)  # type: ignore[arg-type]
        if hasattr(self, "act"):
            y = self.act(self.drop(y) if hasattr(self, "drop") else y)
        return y


class CPUSyncBatchNorm(_SyncMixin, nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics span all ranks (works on CPU/gloo and CUDA).

    In eval mode, or without an initialised process group, it is exactly ``nn.BatchNorm2d``.
    """


_CLASS_CACHE: dict[type, type] = {nn.BatchNorm2d: CPUSyncBatchNorm}


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Make every *trainable* batch norm (affine parameters with requires_grad) of ``module`` synchronise its
    statistics across ranks, in place: the instance's class is swapped for a subclass with :class:`_SyncMixin`, so
    parameter/buffer names, state dicts and checkpoints are unchanged (torch ``BatchNorm2d`` -> CPUSyncBatchNorm,
    timm ``BatchNormAct2d`` -> a synced ``BatchNormAct2d``). Frozen BNs (the F-CAM encoder) are left alone."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _SyncMixin):
            if m.weight is None or not m.weight.requires_grad:
                continue
            cls = type(m)
            if cls not in _CLASS_CACHE:
                _CLASS_CACHE[cls] = type(f"Sync{cls.__name__}", (_SyncMixin, cls), {"__module__": __name__})
            m.__class__ = _CLASS_CACHE[cls]
    return module
