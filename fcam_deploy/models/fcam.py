"""F-CAM: frozen CAM classifier + U-Net decoder + 2-channel segmentation head (docs/method.md §1.4)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fcam_deploy.models.backbones import BackboneSpec
from fcam_deploy.models.classifier import CAMClassifier, _check_classes

__all__ = ["FCAM", "CenterBlock", "DecoderBlock", "FCAMOutput", "UNetDecoder", "decoder_parameter_count"]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """Conv3×3 (pad 1, no bias) → BN → ReLU (the official ``Conv2dReLU`` with batchnorm)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CenterBlock(nn.Sequential):
    """Two Conv3×3-BN-ReLU, C→C (VGG16 only)."""

    def __init__(self, channels: int) -> None:
        super().__init__(_conv_bn_relu(channels, channels), _conv_bn_relu(channels, channels))


class DecoderBlock(nn.Module):
    """U-Net block: nearest ×2 → (bilinear, align_corners=True, to the skip size if it differs) → concat skip →
    2× Conv3×3-BN-ReLU.

    Shapes: ``x`` (N, in, h, w), ``skip`` (N, skip, h', w') or ``None`` → (N, out, h', w') or (N, out, 2h, 2w).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """The F-CAM U-Net decoder over taps f1..fD (f0 is never used).

    Args:
        tap_channels: channels of f1..fD, shallow→deep.
        decoder_channels: block widths deep→shallow, one per tap.
        center: add a :class:`CenterBlock` on fD (VGG16).

    Shapes: ``forward(features: list of D tensors f1..fD) -> (N, decoder_channels[-1], 2·h1, 2·w1)``.
    """

    def __init__(self, tap_channels: tuple[int, ...], decoder_channels: tuple[int, ...], center: bool) -> None:
        super().__init__()
        if len(tap_channels) != len(decoder_channels):
            raise ValueError(f"{len(tap_channels)} taps but {len(decoder_channels)} decoder widths")
        deep_first = tap_channels[::-1]
        head_ch = deep_first[0]
        skip_chs = list(deep_first[1:]) + [0]
        in_chs = [head_ch] + list(decoder_channels[:-1])
        self.center: nn.Module = CenterBlock(head_ch) if center else nn.Identity()
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels))

    def forward(self, features: list[Tensor]) -> Tensor:
        deep_first = features[::-1]
        x = self.center(deep_first[0])
        skips = deep_first[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class FCAMOutput(NamedTuple):
    """Result of :meth:`FCAM.forward`.

    Attributes:
        logits: (N, K) classifier logits.
        seg_logits: (N, 2, H, W) decoder logits at input resolution; channel 0 background, 1 foreground.
        fg_prob: (N, H, W) float32 softmax foreground probability in [0, 1] (the F-CAM map).
        cam: (N, h, w) raw low-res CAM (no ReLU, no normalisation) of the given or the predicted classes.
    """

    logits: Tensor
    seg_logits: Tensor
    fg_prob: Tensor
    cam: Tensor


class FCAM(nn.Module):
    """Frozen :class:`CAMClassifier` + trainable U-Net decoder + Conv3×3 → 2 segmentation head.

    The classifier is put in eval mode, its parameters get ``requires_grad=False`` and its features are
    detached; :meth:`train` never switches it back to train mode (BN running stats and SPG dropout stay frozen).
    Only ``decoder`` and ``seg_head`` are trainable (:meth:`trainable_parameters`).

    Args:
        classifier: the stage-1 classifier (taken over, not copied).
    """

    def __init__(self, classifier: CAMClassifier) -> None:
        super().__init__()
        spec = classifier.spec
        self.classifier = classifier
        self.decoder = UNetDecoder(tuple(t.channels for t in spec.taps), spec.decoder_channels, spec.center)
        self.seg_head = nn.Conv2d(spec.decoder_channels[-1], 2, kernel_size=3, padding=1, bias=True)
        self._init_decoder()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.classifier.eval()

    def _init_decoder(self) -> None:
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.seg_head.weight)
        assert self.seg_head.bias is not None  # built with bias=True
        nn.init.zeros_(self.seg_head.bias)

    @property
    def arch(self) -> str:
        return self.classifier.arch

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` the model was trained at (the classifier's; set by ``load_checkpoint``), or ``None``."""
        return self.classifier.input_size

    @input_size.setter
    def input_size(self, value: tuple[int, int] | None) -> None:
        self.classifier.input_size = value

    @property
    def spec(self) -> BackboneSpec:
        return self.classifier.spec

    def train(self, mode: bool = True) -> FCAM:
        """Set the decoder/head mode; the frozen classifier always stays in eval mode."""
        super().train(mode)
        self.classifier.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Decoder + segmentation-head parameters (what the stage-2 optimiser gets)."""
        return list(self.decoder.parameters()) + list(self.seg_head.parameters())

    def forward(self, x: Tensor, classes: Tensor | None = None) -> FCAMOutput:
        """Run classifier, CAM and decoder.

        Args:
            x: (N, 3, H, W) float32 normalised images (any H, W the backbone accepts; odd sizes are fine).
            classes: optional (N,) int64 classes for the CAM; default the predicted class (argmax of logits).

        Returns:
            :class:`FCAMOutput`. Stores nothing on the module.
        """
        feats = [f.detach() for f in self.classifier.features(x)]
        a = feats[-1]
        logits = self.classifier.classify(a)
        if classes is None:
            classes = logits.argmax(dim=1)
        else:
            classes = _check_classes(classes, x.shape[0], self.classifier.num_classes)
        cam = self.classifier.cam(a, classes)
        seg = self.seg_head(self.decoder(feats))
        if seg.shape[-2:] != x.shape[-2:]:
            seg = F.interpolate(seg, size=x.shape[-2:], mode="bilinear", align_corners=True)
        fg = torch.softmax(seg.float(), dim=1)[:, 1]
        return FCAMOutput(logits, seg, fg, cam)


def decoder_parameter_count(model: FCAM) -> int:
    """Number of decoder + segmentation-head parameters (BN affine included, running stats not)."""
    return sum(p.numel() for p in model.trainable_parameters())
