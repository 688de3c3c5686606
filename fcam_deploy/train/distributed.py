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


def init_distributed(backend: str | None = None, init_method: str | None = None,
                     rank: int | None = None, world_size: int | None = None) -> DistInfo:
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


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics span all ranks (works on CPU/gloo and CUDA).

    In eval mode, or without an initialised process group, it is exactly ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        cnt = torch.full((1,), float(x.numel() // c), dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), cnt])
        stats = all_reduce(stats)
        total = stats[-1]
        mean = stats[:c] / total
        var = stats[c : 2 * c] / total - mean * mean
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                mom = self.momentum if self.momentum is not None else 0.1
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                self.running_var.mul_(1 - mom).add_(mom * unbiased.detach())
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every *trainable* ``nn.BatchNorm2d`` (affine params with requires_grad) by :class:`CPUSyncBatchNorm`
    in place, keeping parameters and buffers; frozen BNs (the F-CAM encoder) are left alone."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d and child.weight is not None and child.weight.requires_grad:
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child)
    return module
