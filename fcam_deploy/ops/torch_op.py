"""The torch API of ``cam_postprocess``: the op ``torch.ops.fcam.cam_postprocess`` (CPU + CUDA kernels of the
extension built by ``make kernels``) with the NumPy reference as fallback (spec: ``kernels/README.md``)."""

from __future__ import annotations

import numbers

import torch

from ..errors import InputError
from . import names
from ._native import log_fallback_once, native_status
from ._reference import PostprocessResult, cam_postprocess_reference

__all__ = ["CamPostprocess", "cam_postprocess", "validate_arguments"]


def _int_arg(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise InputError(f"cam_postprocess: {name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _tracing() -> bool:
    """True under torch.export / torch.compile / ONNX export, where value checks would be data-dependent."""
    return bool(torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def validate_arguments(
    maps: torch.Tensor, out_h: int, out_w: int, tau: float, max_boxes: int
) -> tuple[int, int, float, int]:
    """Checks the public arguments; raises :class:`~fcam_deploy.errors.InputError` naming the problem and fix.

    The NaN/inf check reads values, so it is skipped while tracing (the native op then zeroes such maps).
    """
    if not isinstance(maps, torch.Tensor):
        raise InputError(f"cam_postprocess: maps must be a torch.Tensor (N, h, w), got {type(maps).__name__}")
    if maps.dim() != 3:
        raise InputError(
            f"cam_postprocess: maps must be (N, h, w), got shape {tuple(maps.shape)} "
            "(fix: squeeze the channel dimension or add a batch dimension)"
        )
    if not maps.is_floating_point():
        raise InputError(f"cam_postprocess: maps must be floating point, got {maps.dtype}")
    if maps.shape[1] < 1 or maps.shape[2] < 1:
        raise InputError(f"cam_postprocess: maps must have h, w >= 1, got {tuple(maps.shape)}")
    oh, ow = _int_arg("out_h", out_h, 1), _int_arg("out_w", out_w, 1)
    if oh * ow > 1 << 30:
        raise InputError(f"cam_postprocess: out_h * out_w must be <= 2**30, got {oh}x{ow}")
    k = _int_arg("max_boxes", max_boxes, 1)
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 <= float(tau) <= 1.0:
        raise InputError(f"cam_postprocess: tau must be a float in [0, 1], got {tau!r}")
    if maps.numel() and not _tracing() and not bool(torch.isfinite(maps).all()):
        bad = (~torch.isfinite(maps)).flatten(1).any(1).nonzero().flatten().tolist()
        raise InputError(
            f"cam_postprocess: maps {bad[:8]} contain NaN or inf "
            "(fix: torch.nan_to_num(maps), or find where the map producer divides by zero)"
        )
    return oh, ow, float(tau), k


def cam_postprocess(
    maps: torch.Tensor,
    out_h: int,
    out_w: int,
    tau: float,
    quantize_uint8: bool = False,
    protocol_boxes: bool = False,
    max_boxes: int = 1,
    normalize: bool = True,
) -> PostprocessResult:
    """Upsample, normalise and threshold CAM maps and box their 8-connected components.

    Order (kernels/README.md): per-map min-max on the low-res map (float64, constant -> 0), bilinear upsampling
    to (out_h, out_w) exactly as ``F.interpolate(mode="bilinear", align_corners=False)``, mask = full > tau * max
    (or, with ``quantize_uint8``, the WSOL protocol's ``u8 = uint8(full*255) > int(tau * max(u8))``), then
    8-connected components boxed largest first.

    Args:
        maps: (N, h, w) floating tensor (converted to float32), on the CPU or a CUDA device; NaN/inf rejected.
        out_h, out_w: output size H, W (>= 1; may be smaller than h, w).
        tau: relative threshold in [0, 1].
        quantize_uint8: WSOL protocol threshold on the uint8-quantised map.
        protocol_boxes: WSOL protocol boxes: ranked by ``cv2.contourArea`` of the outer contour, x1/y1 one pixel
            beyond the blob (clipped to W-1/H-1), and an empty mask gives one (0, 0, 0, 0) box.
        max_boxes: K, boxes kept per map.
        normalize: False for maps that already are probabilities (F-CAM): values are clamped to [0, 1] and
            upsampled as they are (identity when h, w == H, W).

    Returns:
        :class:`PostprocessResult` of tensors on ``maps.device``: full float32 (N, H, W) in [0, 1], mask uint8
        (N, H, W) 0/1, boxes int32 (N, K, 4) (x0, y0, x1, y1) inclusive (unused rows -1), count int32 (N,).

    Raises:
        InputError: wrong type/shape/dtype, NaN/inf values, or out-of-range arguments.
    """
    oh, ow, t, k = validate_arguments(maps, out_h, out_w, tau, max_boxes)
    x = maps.detach().to(torch.float32)
    status = native_status()
    if status.available and (x.device.type == "cpu" or (x.device.type == "cuda" and status.cuda)):
        full, mask, boxes, count = getattr(getattr(torch.ops, names.TORCH_NAMESPACE), names.TORCH_OP)(
            x, oh, ow, t, bool(quantize_uint8), bool(protocol_boxes), k, bool(normalize)
        )
        return PostprocessResult(full, mask, boxes, count)
    reason = status.reason if not status.available else f"the extension has no kernel for {x.device.type}"
    log_fallback_once(reason)
    ref = cam_postprocess_reference(
        x.cpu().numpy(), oh, ow, t, bool(quantize_uint8), bool(protocol_boxes), k, bool(normalize)
    )
    return PostprocessResult(*(torch.from_numpy(a).to(x.device) for a in ref))


class CamPostprocess(torch.nn.Module):
    """Module form of :func:`cam_postprocess` with fixed options (for export: it calls the torch op)."""

    def __init__(
        self,
        out_h: int,
        out_w: int,
        tau: float,
        quantize_uint8: bool = False,
        protocol_boxes: bool = False,
        max_boxes: int = 1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.out_h, self.out_w, self.tau = out_h, out_w, tau
        self.quantize_uint8, self.protocol_boxes = quantize_uint8, protocol_boxes
        self.max_boxes, self.normalize = max_boxes, normalize

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        full, mask, boxes, count = cam_postprocess(
            maps,
            self.out_h,
            self.out_w,
            self.tau,
            self.quantize_uint8,
            self.protocol_boxes,
            self.max_boxes,
            self.normalize,
        )
        return full, mask, boxes, count

    def extra_repr(self) -> str:
        return (
            f"out=({self.out_h}, {self.out_w}), tau={self.tau}, quantize_uint8={self.quantize_uint8}, "
            f"protocol_boxes={self.protocol_boxes}, max_boxes={self.max_boxes}, normalize={self.normalize}"
        )
