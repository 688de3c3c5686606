"""Train and eval transforms of docs/method.md §2.6, parameterised by ``(size, resize)``.

* Train: resize to ``resize x resize`` (bilinear, aspect ratio not kept) -> random ``size x size`` crop ->
  random horizontal flip (p = 0.5) -> ToTensor -> Normalize(mean, std). The raw RGB crop (float32 in
  [0, 255]) is returned alongside with the identical geometry, for the CRF loss.
* Eval: resize straight to ``size x size`` (bilinear, no crop) -> ToTensor -> Normalize.

The official values are ``size=224, resize=256`` with the ImageNet mean/std. Resizing is PIL's bilinear resize
(``torchvision.transforms.v2.functional.resize`` on a PIL image), exactly as the reference's ``Resize`` on PIL
images; crop and flip are exact index operations. All randomness comes from the ``torch.Generator`` passed in,
drawn in this order: crop top, crop left, flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fcam_deploy.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropFlip",
    "apply_crop_flip",
    "eval_transform",
    "normalize",
    "resize_to_tensor",
    "sample_crop_flip",
    "train_transform",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropFlip:
    """Geometry of one training sample: crop ``[top:top+size, left:left+size]`` of the resized image, then
    a horizontal flip when ``flip``."""

    top: int
    left: int
    flip: bool


def _check_sizes(size: int, resize: int | None) -> None:
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"size={size!r}: need a positive integer")
    if resize is not None and (not isinstance(resize, int) or resize < size):
        raise ConfigError(f"resize={resize!r}: need an integer >= size ({size})")


def sample_crop_flip(size: int, resize: int, generator: torch.Generator) -> CropFlip:
    """Draw crop offsets uniformly in ``[0, resize - size]`` and a flip with p = 0.5 from ``generator``."""
    _check_sizes(size, resize)
    top = int(torch.randint(0, resize - size + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, resize - size + 1, (1,), generator=generator).item())
    flip = bool(torch.rand((1,), generator=generator).item() < 0.5)
    return CropFlip(top=top, left=left, flip=flip)


def resize_to_tensor(img: PILImage.Image, side: int) -> torch.Tensor:
    """Bilinear PIL resize to ``side x side`` (aspect not kept) -> uint8 tensor (3, side, side)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    if getattr(img, "mode", None) != "RGB":
        raise InputError(
            f"expected an RGB PIL image, got {type(img).__name__} mode {getattr(img, 'mode', None)!r} "
            f"(fix: load it with fcam_deploy.data.load_image_rgb)"
        )
    resized = F.resize(img, [side, side], interpolation=InterpolationMode.BILINEAR)
    return F.pil_to_tensor(resized)


def normalize(raw: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(raw / 255 - mean) / std`` per channel; ``raw`` float32 (3, H, W) in [0, 255]."""
    from torchvision.transforms.v2 import functional as F

    return F.normalize(raw / 255.0, list(mean), list(std))


def apply_crop_flip(resized: torch.Tensor, size: int, geom: CropFlip) -> torch.Tensor:
    """Crop and flip a (C, R, R) tensor with ``geom``."""
    from torchvision.transforms.v2 import functional as F

    out = F.crop(resized, geom.top, geom.left, size, size)
    if geom.flip:
        out = F.horizontal_flip(out)
    return out


def train_transform(
    img: PILImage.Image | torch.Tensor,
    size: int,
    resize: int,
    generator: torch.Generator,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training transform.

    Args:
        img: RGB PIL image, or an already resized uint8 tensor (3, resize, resize).
        size: crop side S.
        resize: side R the image is first resized to (R >= S).
        generator: source of the crop/flip randomness.
        mean, std: normalisation (ImageNet by default).

    Returns:
        ``(image, raw)``: float32 (3, S, S) normalised, and float32 (3, S, S) RGB in [0, 255], same geometry.
    """
    _check_sizes(size, resize)
    resized = img if isinstance(img, torch.Tensor) else resize_to_tensor(img, resize)
    if resized.shape != (3, resize, resize) or resized.dtype != torch.uint8:
        raise InputError(f"expected a uint8 (3, {resize}, {resize}) tensor, got {resized.dtype} {tuple(resized.shape)}")
    geom = sample_crop_flip(size, resize, generator)
    raw = apply_crop_flip(resized, size, geom).to(torch.float32)
    return normalize(raw, mean, std), raw


def eval_transform(
    img: PILImage.Image | torch.Tensor,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval transform: bilinear resize straight to ``size x size``, no crop.

    Returns:
        ``(image, raw)``: float32 (3, S, S) normalised, and float32 (3, S, S) RGB in [0, 255].
    """
    _check_sizes(size, None)
    resized = img if isinstance(img, torch.Tensor) else resize_to_tensor(img, size)
    if resized.shape != (3, size, size) or resized.dtype != torch.uint8:
        raise InputError(f"expected a uint8 (3, {size}, {size}) tensor, got {resized.dtype} {tuple(resized.shape)}")
    raw = resized.to(torch.float32)
    return normalize(raw, mean, std), raw
