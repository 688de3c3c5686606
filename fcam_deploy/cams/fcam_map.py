"""The F-CAM localization map: the model's foreground probability, class-agnostic (docs/method.md §3)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import Self

from fcam_deploy.cams._core import (
    CamResult,
    Upsample,
    check_choice,
    model_device_dtype,
    preserve_model_state,
    upsample_maps,
    validate_images,
)
from fcam_deploy.errors import InputError

__all__ = ["FCAMMap"]


class FCAMMap:
    """F-CAM map extractor.

    The model's ``forward(x, classes=None)`` returns an object with ``fg_prob (N, H', W')`` in [0, 1] and
    ``logits (N, K)`` (``fcam_deploy.models.FCAM``). The map is ``fg_prob`` as is (no min-max normalisation, as the
    F-CAM code): ``lowres`` is it at the decoder's resolution, ``full`` is it resized bilinearly
    (align_corners=False) to the input size when the sizes differ; NaN becomes 0 (``nan_to_num``).

    Args:
        model: an F-CAM model.
        upsample: used only when ``fg_prob`` is not at the input size: ``"bilinear"`` (align_corners=False, the
            F-CAM code) or ``"bicubic_cv2"`` (then clipped to [0, 1]); never renormalised (absolute probabilities,
            PxAP depends on them).
    """

    method = "fcam"

    def __init__(self, model: nn.Module, *, upsample: Upsample = "bilinear") -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
        check_choice("upsample", upsample, ("bilinear", "bicubic_cv2"))
        self.model = model
        self.upsample: Upsample = upsample

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, images: Tensor, classes: Any = None) -> CamResult:
        """Args:
            images: ``(N, 3, H, W)`` float, normalised.
            classes: passed to the model (it selects the class of its ``cam`` output only; the map is
                class-agnostic).

        Returns:
            :class:`CamResult` (``classes`` = the given classes as a tensor, or ``None``).
        """
        device, dtype = model_device_dtype(self.model)
        x = validate_images(images, device, dtype)
        cls_t = None
        if classes is not None:
            cls_t = torch.as_tensor(classes, dtype=torch.int64, device=device).reshape(-1)
            if cls_t.numel() == 1 and x.shape[0] > 1:
                cls_t = cls_t.expand(x.shape[0]).clone()
        with preserve_model_state(self.model), torch.no_grad():
            out = self.model(x, cls_t) if cls_t is not None else self.model(x)
        fg = getattr(out, "fg_prob", None)
        if not isinstance(fg, Tensor) or fg.ndim != 3 or fg.shape[0] != x.shape[0]:
            raise InputError(
                f"{type(self.model).__name__} output has no fg_prob (N, H, W) tensor (fix: pass an F-CAM model, "
                "fcam_deploy.models.FCAM)"
            )
        low = torch.nan_to_num(fg.detach(), nan=0.0)
        size = (x.shape[-2], x.shape[-1])
        if tuple(low.shape[-2:]) != size:
            full = upsample_maps(low, size, self.upsample).clamp(0.0, 1.0)
        else:
            full = low.clone()
        logits = getattr(out, "logits", None)
        return CamResult(
            lowres=low,
            full=full,
            classes=cls_t,
            logits=logits.detach() if isinstance(logits, Tensor) else None,
            method=self.method,
        )
