"""Small random CAM classifiers (conv trunk -> GAP -> Linear), CAMClassifier-like, no downloads."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class Out(NamedTuple):
    logits: Tensor
    features: list[Tensor]


class TinyCAMNet(nn.Module):
    """conv-BN-ReLU (s2) -> conv-BN-ReLU (s2) -> [dropout] -> GAP -> Linear. ``cam_layer = "trunk"``.

    ``structured=True`` returns a ClassifierOutput-like NamedTuple (the CAMClassifier contract); otherwise the
    logits tensor (what the grad-cam package expects).
    """

    def __init__(self, num_classes: int = 5, width: int = 8, channels: int = 12, structured: bool = False) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(channels, num_classes)
        self.cam_layer = "trunk"
        self.structured = structured

    def features(self, x: Tensor) -> list[Tensor]:
        return [self.trunk(x)]

    def forward(self, x: Tensor) -> Tensor | Out:
        a = self.trunk(x)
        logits = self.head(self.drop(a.mean(dim=(2, 3))))
        return Out(logits, [a]) if self.structured else logits


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32, **kw: object) -> TinyCAMNet:
    """Random model with non-trivial BN statistics, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    m = TinyCAMNet(**kw)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m.to(dtype).eval()


def make_images(n: int = 3, h: int = 32, w: int = 40, seed: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)
