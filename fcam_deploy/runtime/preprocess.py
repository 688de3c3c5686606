"""Image intake of the runtime: any supported image -> uint8 RGB, and the resize to the model's input size.

No torch here: a torch tensor is accepted when the caller passes one (torch is then already imported by the
caller), and is recognised without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from fcam_deploy.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["PIL_MODES", "ImageLike", "is_image_batch", "resize_uint8", "to_rgb_uint8"]

ImageLike = Any  # PIL.Image.Image | np.ndarray (H, W, 3) uint8 | torch.Tensor (3, H, W)

#: PIL modes converted to RGB on intake (others, e.g. 16-bit "I;16", are refused: their scaling is ambiguous).
PIL_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr", "1")


def _is_torch_tensor(obj: object) -> TypeGuard[torch.Tensor]:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach") and hasattr(obj, "ndim")


def is_image_batch(images: object) -> bool:
    """True for a list/tuple of images or a 4-D torch tensor ``(N, 3, H, W)`` (a batch), False for one image."""
    if isinstance(images, (list, tuple)):
        return True
    return _is_torch_tensor(images) and int(images.ndim) == 4


def _tensor_to_uint8(image: Any) -> np.ndarray:
    import torch  # only reached with a torch tensor in hand, so torch is already imported

    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"tensor images must be (3, H, W), got shape {tuple(image.shape)}")
    t = image.detach().to("cpu")
    if t.dtype == torch.uint8:
        return np.asarray(t.permute(1, 2, 0).numpy())
    if t.is_floating_point():
        if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.min()) < 0.0 or float(t.max()) > 1.0):
            raise InputError("floating tensor images must be finite and in [0, 1] (un-normalised RGB)")
        return np.asarray((t.to(torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    raise InputError(f"tensor images must be uint8 or floating in [0, 1], got {t.dtype}")


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Any supported image -> C-contiguous uint8 ``(H, W, 3)`` RGB.

    Accepts a PIL image (converted to RGB), a NumPy uint8 ``(H, W, 3)`` array (used as is, no copy when already
    C-contiguous), or a torch tensor ``(3, H, W)`` (uint8, or floating in [0, 1], rounded to uint8).

    Raises:
        InputError: wrong type, dtype, shape, channel count, empty, non-finite or out-of-range values.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in PIL_MODES:
            raise InputError(f"PIL image mode {image.mode!r} is not supported (convert to RGB first)")
        if image.width == 0 or image.height == 0:
            raise InputError(f"empty image ({image.width}x{image.height})")
        arr = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise InputError(f"NumPy images must be uint8 (H, W, 3) RGB, got dtype {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"NumPy images must be (H, W, 3) RGB, got shape {image.shape} (fix: for gray use "
                "np.repeat(a[..., None], 3, -1); for RGBA drop the alpha channel)"
            )
        arr = image
    elif _is_torch_tensor(image):
        arr = _tensor_to_uint8(image)
    else:
        raise InputError(
            f"unsupported image type {type(image).__name__} (use a PIL image, a uint8 (H, W, 3) array or a "
            "(3, H, W) tensor)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``(h, w, 3)`` RGB -> uint8 ``(H, W, 3)`` with ``(H, W) = size``: PIL bilinear, straight to H x W.

    This is the evaluation transform's resize (``fcam_deploy.data.transforms``) and what every exported model's
    metadata (``resize: bilinear``) asks callers to do. Returns ``image`` itself when it already has that size.
    """
    from PIL import Image

    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image, mode="RGB").resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
