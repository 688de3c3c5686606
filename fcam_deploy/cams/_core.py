"""Shared machinery of the CAM extractors: result type, layer resolution, model-state guard, input checks,
normalisation and upsampling, the numerical constants every method shares and :func:`channel_weighted_sum`.

This is the bottom of the ``cams`` package: it imports nothing from its siblings, and every other ``cams`` module
may import it (``closed_form``, ``gradient``, ``prototypes`` -> ``extractors`` -> ``lpcam`` -> ``api``; no cycle).

Nothing here keeps global state. Hooks are registered only for the duration of one extractor call and are
removed in a ``finally`` block, so a model is never left with a hook, a changed training flag, a changed
``requires_grad`` flag or a new ``.grad``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fcam_deploy.errors import InputError

__all__ = [
    "COSINE_EPS",
    "GRADCAMPP_EPS",
    "GRADCAM_NORM_EPS",
    "LPCAM_CAM_EPS",
    "XGRADCAM_EPS",
    "CamResult",
    "Normalize",
    "Upsample",
    "channel_weighted_sum",
    "finalize_maps",
    "logits_of",
    "minmax_normalize",
    "model_device_dtype",
    "preserve_model_state",
    "resolve_classes",
    "resolve_head",
    "resolve_layer",
    "upsample_maps",
    "validate_images",
]

Upsample = Literal["bilinear", "bicubic_cv2"]
Normalize = Literal["minmax", "gradcam"]

_UPSAMPLE_CHOICES = ("bilinear", "bicubic_cv2")
_NORMALIZE_CHOICES = ("minmax", "gradcam")
#: ``pytorch_grad_cam.utils.image.scale_cam_image``: ``x -= min; x /= (1e-7 + max)``.
GRADCAM_NORM_EPS = 1e-7
#: ``pytorch_grad_cam.GradCAMPlusPlus``: eps added to the alpha denominator.
GRADCAMPP_EPS = 1e-6
#: ``pytorch_grad_cam.XGradCAM``: eps added to the activation sum.
XGRADCAM_EPS = 1e-7
#: ``torch.nn.functional.cosine_similarity``'s eps (LPCAM's mean-of-cosines and its closed form).
COSINE_EPS = 1e-8
#: LPCAM / IRN ``make_cam.py``: the split CAM is divided by ``max + 1e-5``.
LPCAM_CAM_EPS = 1e-5


def channel_weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``sum_k weights[n,k] * activations[n,k,i,j]`` -> ``(N, h, w)`` as one batched MatMul.

    Args:
        weights: ``(N, C)``.
        activations: ``(N, C, h, w)``, same dtype.
    """
    n, c, h, w = activations.shape
    return torch.matmul(weights.unsqueeze(1), activations.reshape(n, c, h * w)).reshape(n, h, w)


@dataclass(frozen=True)
class CamResult:
    """Localization maps of one batch.

    Attributes:
        lowres: ``(N, h, w)`` map at the target layer's resolution, normalised to [0, 1] (min-max; NaN or
            constant maps become all zeros). For ``fcam`` it is the fg probability at the decoder's output
            resolution, as is.
        full: ``(N, H, W)`` map at the input resolution, in [0, 1], same dtype/device as ``lowres``.
        classes: ``(N,)`` int64, the class each map explains (ground truth when given, else top-1), or
            ``None`` for class-agnostic maps (``fcam`` without classes).
        logits: ``(N, K)`` classifier scores of the clean images (``None`` when the method has none).
        method: the method name.
    """

    lowres: Tensor
    full: Tensor
    classes: Tensor | None
    logits: Tensor | None
    method: str


# ----------------------------------------------------------------------------------------------- model access
def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a target layer given as a module, a dotted name from
    ``model.named_modules()``, or ``None`` (then ``model.cam_layer`` is used).

    Raises:
        InputError: the name is unknown, the module is not part of ``model``, or ``None`` was given for a
            model without a ``cam_layer`` attribute.
    """
    if layer is None:
        layer = getattr(model, "cam_layer", None)
        if not isinstance(layer, str):
            raise InputError(
                f"{type(model).__name__} has no `cam_layer` attribute: pass target_layer= (an nn.Module of the "
                "model or its dotted name from model.named_modules())"
            )
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in named:
            close = [n for n in named if n and layer.split(".")[-1] in n][:5]
            raise InputError(
                f"target layer {layer!r} is not a module of {type(model).__name__} "
                f"(fix: use a name from model.named_modules(), e.g. {close or list(named)[1:6]})"
            )
        return layer, named[layer]
    if isinstance(layer, nn.Module):
        for name, mod in named.items():
            if mod is layer:
                return name, mod
        raise InputError(
            f"target layer {type(layer).__name__} is not a submodule of {type(model).__name__} "
            "(fix: pass a module reached from the model, or its dotted name)"
        )
    raise InputError(f"target layer must be an nn.Module, a str or None, got {type(layer).__name__}")


def resolve_head(model: nn.Module, head: nn.Linear | str | None) -> nn.Linear:
    """The linear classifier applied after global average pooling (``model.head`` by default)."""
    found: object = head
    if found is None:
        found = getattr(model, "head", None)
        if found is None:
            raise InputError(
                f"{type(model).__name__} has no `head` attribute: pass head= (the nn.Linear applied after GAP)"
            )
    if isinstance(found, str):
        _, found = resolve_layer(model, found)
    if not isinstance(found, nn.Linear):
        raise InputError(
            f"the CAM head must be an nn.Linear(C, K) applied after global average pooling, got "
            f"{type(found).__name__} (fix: pass head= or use an autograd method on another layer)"
        )
    return found


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU/float32 if it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def logits_of(output: Any) -> Tensor:
    """Classifier scores ``(N, K)`` from a model output: a tensor, an object with ``.logits``, or a
    tuple/list whose first item is the logits."""
    if isinstance(output, Tensor):
        logits = output
    elif hasattr(output, "logits"):
        logits = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        logits = output[0]
    else:
        raise InputError(
            f"cannot find logits in a model output of type {type(output).__name__} "
            "(fix: the model must return a tensor (N, K), an object with .logits, or a tuple starting with it)"
        )
    if logits.ndim != 2:
        raise InputError(f"model logits must be (N, K), got shape {tuple(logits.shape)}")
    return logits


@contextlib.contextmanager
def preserve_model_state(model: nn.Module, *, eval_mode: bool = True) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore, exactly, every submodule's ``training`` flag, every
    parameter's ``requires_grad`` flag and ``.grad`` (object identity) afterwards, also on error."""
    training = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, req, grad in params:
            if p.requires_grad != req:
                p.requires_grad_(req)
            if p.grad is not grad:
                p.grad = grad


# ------------------------------------------------------------------------------------------------ validation
def validate_images(images: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Check ``images`` is a finite floating ``(N, C, H, W)`` tensor with N >= 1 and move it to
    ``device``/``dtype``."""
    if not isinstance(images, Tensor):
        raise InputError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point (normalised), got {images.dtype}")
    images = images.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(images).all()):
        raise InputError("images contain NaN or Inf (fix: check the loader / normalisation)")
    return images


def resolve_classes(classes: Any, n: int, num_classes: int, logits: Tensor) -> Tensor:
    """``(N,)`` int64 target classes on ``logits.device``: ``classes`` when given (an int for every image, a
    sequence or a tensor of N ints), else the top-1 prediction of ``logits``."""
    if classes is None:
        return logits.argmax(dim=1)
    if isinstance(classes, bool):
        raise InputError("classes must be integers, got a bool")
    if isinstance(classes, int):
        out = torch.full((n,), classes, dtype=torch.int64, device=logits.device)
    else:
        if isinstance(classes, Tensor):
            t = classes
        elif isinstance(classes, Sequence):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
                raise InputError("classes must be a sequence of ints")
            t = torch.tensor(list(classes), dtype=torch.int64)
        else:
            raise InputError(f"classes must be None, an int, a sequence of ints or a tensor, got {type(classes)}")
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"classes must be an integer tensor, got {t.dtype}")
        if t.ndim != 1 or t.shape[0] != n:
            raise InputError(f"classes must have shape ({n},) (one per image), got {tuple(t.shape)}")
        out = t.to(device=logits.device, dtype=torch.int64)
    if n and (int(out.min()) < 0 or int(out.max()) >= num_classes):
        raise InputError(f"classes must lie in [0, {num_classes}), got min {int(out.min())} max {int(out.max())}")
    return out


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}")


# --------------------------------------------------------------------------------------- normalise / resize
def minmax_normalize(maps: Tensor, eps: float = 0.0) -> Tensor:
    """Per-map min-max normalisation of ``(N, h, w)`` maps (pure tensor ops, ONNX-exportable).

    ``eps == 0`` (the protocol): ``(x - min) / (max - min)``; a map with a NaN or with ``max == min`` becomes all
    zeros. ``eps > 0`` (the ``grad-cam`` package): ``(x - min) / (max - min + eps)`` (NaN maps still -> 0).
    Returns a new tensor; the input is not modified.
    """
    if maps.ndim != 3:
        raise InputError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)
    has_nan = torch.isnan(flat).any(dim=1)
    clean = torch.where(torch.isnan(flat), torch.zeros_like(flat), flat)
    lo = clean.amin(dim=1, keepdim=True)
    hi = clean.amax(dim=1, keepdim=True)
    span = hi - lo
    if eps > 0:
        out = (clean - lo) / (span + eps)
    else:
        ok = span > 0
        out = torch.where(ok, (clean - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(clean))
    out = torch.where(has_nan[:, None], torch.zeros_like(out), out)
    return out.reshape(maps.shape)


def upsample_maps(maps: Tensor, size: tuple[int, int], mode: Upsample = "bilinear") -> Tensor:
    """Resize ``(N, h, w)`` maps to ``size = (H, W)``.

    ``bilinear``: ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` (the F-CAM code,
    and OpenCV ``INTER_LINEAR``). ``bicubic_cv2``: ``cv2.resize(..., interpolation=cv2.INTER_CUBIC)`` per map in
    float32 on the CPU, as wsolevaluation does (it overshoots: renormalise afterwards); the result comes back
    on ``maps.device`` in ``maps.dtype``.
    """
    check_choice("upsample", mode, _UPSAMPLE_CHOICES)
    if maps.ndim != 3:
        raise InputError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}")
    h_out, w_out = int(size[0]), int(size[1])
    if mode == "bilinear":
        if tuple(maps.shape[-2:]) == (h_out, w_out):
            return maps.clone()
        return nn.functional.interpolate(maps[:, None], size=(h_out, w_out), mode="bilinear", align_corners=False)[:, 0]
    import cv2  # lazy: optional at import time
    import numpy as np

    src = maps.detach().to("cpu", torch.float32).numpy()
    out = np.stack([cv2.resize(m, (w_out, h_out), interpolation=cv2.INTER_CUBIC) for m in src])
    return torch.from_numpy(out).to(device=maps.device, dtype=maps.dtype)


def finalize_maps(
    raw: Tensor, size: tuple[int, int], upsample: Upsample = "bilinear", normalize: Normalize = "minmax"
) -> tuple[Tensor, Tensor]:
    """Turn raw low-res maps ``(N, h, w)`` into ``(lowres in [0,1], full (N, H, W) in [0,1])``.

    - ``normalize="minmax", upsample="bilinear"`` (DESIGN / F-CAM code): min-max at low resolution (NaN or
      constant -> 0), then bilinear (align_corners=False); not renormalised.
    - ``normalize="minmax", upsample="bicubic_cv2"`` (wsolevaluation): ``full`` = min-max of the OpenCV bicubic
      resize of the raw map (bicubic overshoots, so the normalisation comes after the resize).
    - ``normalize="gradcam"`` (PyPI ``grad-cam``'s ``scale_cam_image`` twice): ``(x-min)/(max-min+1e-7)`` at low
      resolution, resize, and the same scaling again at full resolution.
    """
    check_choice("normalize", normalize, _NORMALIZE_CHOICES)
    check_choice("upsample", upsample, _UPSAMPLE_CHOICES)
    if normalize == "gradcam":
        low = minmax_normalize(raw, eps=GRADCAM_NORM_EPS)
        full = minmax_normalize(upsample_maps(low, size, upsample), eps=GRADCAM_NORM_EPS)
        return low, full
    low = minmax_normalize(raw)
    if upsample == "bilinear":
        full = upsample_maps(low, size, "bilinear")
    else:
        clean = torch.where(torch.isnan(raw), torch.zeros_like(raw), raw)
        full = minmax_normalize(upsample_maps(clean, size, "bicubic_cv2"))
        full = torch.where(torch.isnan(raw).flatten(1).any(1)[:, None, None], torch.zeros_like(full), full)
    return low, full.clamp(0.0, 1.0)
