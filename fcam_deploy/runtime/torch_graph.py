"""The deployable localization graph: uint8 image batch -> logits, class, map (+ mask, boxes).

:class:`LocalizationGraph` is the one ``nn.Module`` that ``fcam export`` traces and that the ``torch`` backend of
:class:`fcam_deploy.runtime.Localizer` runs eagerly, so PyTorch and every exported runtime execute the same
computation. It lives with the runtime's torch backend (this module is imported only for ``backend="torch"`` and
by the export code); :func:`build_graph` loads a checkpoint into it. It is forward-only: the gradient baselines
use their closed forms for a GAP + linear head (see :mod:`fcam_deploy.cams.closed_form`), so no autograd is
needed at export or run time.

I/O follows :mod:`fcam_deploy.runtime.base` (input ``images`` uint8 (N, H, W, 3) RGB; normalisation inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcam_deploy.errors import ConfigError, InputError
from fcam_deploy.ops import names
from fcam_deploy.runtime.base import METHODS, POSTPROCESS_MODES, ModelMetadata

__all__ = [
    "CUSTOM_OP_DOMAIN",
    "CUSTOM_OP_TYPE",
    "DEFAULT_TAU",
    "NODE_MASK_DTYPE",
    "LocalizationGraph",
    "build_graph",
]

#: ONNX domain / op type of the fused post-processing node (TensorRT maps it to plugin FcamCamPostprocess).
CUSTOM_OP_DOMAIN = names.ONNX_DOMAIN
CUSTOM_OP_TYPE = names.ONNX_OP
#: tau used when the checkpoint has no validation-optimal threshold.
DEFAULT_TAU = 0.5
#: dtype of the node's mask output (cast to the uint8 ``mask`` graph output inside the graph).
NODE_MASK_DTYPE = torch.int32


class LocalizationGraph(nn.Module):
    """Image batch -> localization outputs, for one model, method and post-processing mode.

    Args:
        model: a ``CAMClassifier`` (baseline methods) or an ``FCAM`` (method ``fcam``), in eval mode.
        method: one of :data:`fcam_deploy.runtime.base.METHODS`.
        postprocess: ``none`` (logits, class, map), ``onnx`` (+ mask from standard ops) or ``custom-op``
            (+ mask, boxes and count from the fused ``fcam::CamPostprocess`` op).
        input_size: ``(H, W)`` of the graph input.
        mean, std: RGB normalisation in [0, 1] units.
        tau: mask threshold on the [0, 1] map.
        max_boxes: rows of the ``boxes`` output (``custom-op``).

    ``forward(images)``: ``images`` uint8 ``(N, H, W, 3)`` RGB. Returns a tuple in the order of
    ``ModelMetadata.output_names``: ``logits (N, K) f32``, ``pred_class (N,) i64``, ``map (N, H, W) f32 in
    [0, 1]``, then ``mask (N, H, W) u8`` and, for ``custom-op``, ``boxes (N, max_boxes, 4) i32`` and
    ``box_count (N,) i32``.
    """

    mean: Tensor  # (1, 3, 1, 1) float32 buffers
    std: Tensor

    def __init__(
        self,
        model: nn.Module,
        method: str,
        postprocess: str,
        input_size: tuple[int, int],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        tau: float,
        max_boxes: int = 8,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
        if postprocess not in POSTPROCESS_MODES:
            raise ConfigError(f"postprocess must be one of {POSTPROCESS_MODES}, got {postprocess!r}")
        is_fcam = hasattr(model, "decoder") or type(model).__name__ == "FCAM"
        if method == "fcam" and not is_fcam:
            raise ConfigError("method 'fcam' needs an F-CAM checkpoint (kind 'fcam'); this one is a classifier")
        if not 0.0 <= tau <= 1.0:
            raise ConfigError(f"tau must lie in [0, 1], got {tau}")
        if max_boxes < 1:
            raise ConfigError(f"max_boxes must be >= 1, got {max_boxes}")
        self.model = model.eval()
        if method != "fcam":
            from fcam_deploy.cams.closed_form import CLOSED_FORM_HEADS

            self.head = CLOSED_FORM_HEADS[method](normalize=False)
        self.method = method
        self.postprocess = postprocess
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.tau = float(tau)
        self.max_boxes = int(max_boxes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` normalised exactly like ToTensor + Normalize."""
        x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.mean) / self.std

    def maps(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns ``(logits, pred_class, lowres map in [0, 1] (N, h, w), full map in [0, 1] (N, H, W))``."""
        from fcam_deploy.cams._core import minmax_normalize, upsample_maps

        x = self.normalize(images)
        size = (int(images.shape[1]), int(images.shape[2]))
        if self.method == "fcam":
            out = self.model(x)
            logits = out.logits
            pred = logits.argmax(dim=1)
            full = out.fg_prob.to(torch.float32)
            if tuple(full.shape[-2:]) != size:
                full = upsample_maps(full, size, "bilinear").clamp(0.0, 1.0)
            return logits, pred, full, full
        clf = self.model
        out = clf(x)
        logits = out.logits
        pred = logits.argmax(dim=1)
        features = out.features[-1]
        linear = clf.head
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"the classifier's head must be an nn.Linear, got {type(linear).__name__}")
        raw = self.head(features, linear.weight, pred)
        low = minmax_normalize(raw)
        full = upsample_maps(low, size, "bilinear").clamp(0.0, 1.0)
        return logits, pred, low, full

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        logits, pred, low, full = self.maps(images)
        if self.postprocess == "none":
            return logits, pred, full
        if self.postprocess == "onnx":
            # the op's rule (kernels/README.md): mask = full > tau * max(full), per map
            thr = full.amax(dim=(1, 2), keepdim=True) * self.tau
            mask = (full > thr).to(torch.uint8)
            return logits, pred, full, mask
        h, w = self.input_size
        normalize = self.method != "fcam"  # F-CAM's fg probability is used as is
        pp_full, mask, boxes, count = _fused_postprocess(low, h, w, self.tau, self.max_boxes, normalize)
        return logits, pred, pp_full, mask, boxes, count


def _fused_postprocess(low: Tensor, h: int, w: int, tau: float, max_boxes: int, normalize: bool) -> tuple[Tensor, ...]:
    """``fcam::CamPostprocess`` on ``(N, h, w)`` maps: an ONNX custom node under export, the op otherwise.

    Under export the node (op version :data:`~fcam_deploy.ops.names.ONNX_OPSET_VERSION`) outputs the mask as
    **int32** 0/1, a type a TensorRT plugin may declare (``getOutputDataTypes`` rejects UINT8 and BOOL), and a
    standard ONNX ``Cast`` makes the uint8 ``mask`` graph output (TensorRT builds it as an ICastLayer, the only kind
    of layer that may produce a UINT8 network output). ONNX Runtime and TensorRT run the same graph.
    """
    if torch.onnx.is_in_onnx_export():
        n = low.shape[0]
        full, mask_i32, boxes, count = torch.onnx.ops.symbolic_multi_out(
            f"{CUSTOM_OP_DOMAIN}::{CUSTOM_OP_TYPE}",
            (low,),
            attrs=_custom_op_attrs(h, w, tau, max_boxes, normalize),
            dtypes=(torch.float32, NODE_MASK_DTYPE, torch.int32, torch.int32),
            shapes=((n, h, w), (n, h, w), (n, max_boxes, 4), (n,)),
            version=names.ONNX_OPSET_VERSION,
        )
        return full, mask_i32.to(torch.uint8), boxes, count
    from fcam_deploy.ops import cam_postprocess

    full, mask, boxes, count = cam_postprocess(low, h, w, tau, max_boxes=max_boxes, normalize=normalize)
    return full, mask, boxes, count


def _custom_op_attrs(h: int, w: int, tau: float, max_boxes: int, normalize: bool) -> dict[str, Any]:
    return {
        names.ATTR_OUT_H: int(h),
        names.ATTR_OUT_W: int(w),
        names.ATTR_TAU: float(tau),
        names.ATTR_MAX_BOXES: int(max_boxes),
        names.ATTR_QUANTIZE_UINT8: 0,
        names.ATTR_PROTOCOL_BOXES: 0,
        names.ATTR_NORMALIZE: int(normalize),
        # read by TensorRT's ONNX parser to find plugin FcamCamPostprocess v"1" in namespace "fcam"
        "plugin_namespace": names.TRT_PLUGIN_NAMESPACE,
        "plugin_version": names.TRT_PLUGIN_VERSION,
    }


def _weights_digest(checkpoint: Path) -> str | None:
    """``weights_sha256`` of a checkpoint's ``config.json`` (None when absent)."""
    import json

    try:
        sha = json.loads((checkpoint / "config.json").read_text(encoding="utf-8")).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return sha if isinstance(sha, str) else None


def build_graph(
    checkpoint: Path,
    method: str | None = None,
    postprocess: str = "onnx",
    size: tuple[int, int] | None = None,
    max_boxes: int = 8,
    tau: float | None = None,
) -> tuple[LocalizationGraph, ModelMetadata]:
    """Load a checkpoint directory and wrap it as a :class:`LocalizationGraph` plus its deploy metadata.

    Args:
        checkpoint: a checkpoint directory (``config.json`` + ``model.safetensors``).
        method: map method; default ``fcam`` for an F-CAM checkpoint, ``cam`` for a classifier.
        postprocess: ``none | onnx | custom-op``.
        size: ``(H, W)`` graph input size; default the checkpoint's ``input_size``.
        max_boxes: rows of the ``boxes`` output of a ``custom-op`` graph.
        tau: mask threshold; default the checkpoint's validation-optimal ``threshold`` (0.5 when it has none).

    Raises:
        CheckpointError: unreadable checkpoint. ConfigError: incompatible method/options.
    """
    from fcam_deploy import __version__
    from fcam_deploy.models import FCAM, load_checkpoint

    model, ck = load_checkpoint(Path(checkpoint))
    ck_sha = _weights_digest(Path(checkpoint))
    kind = ck.kind
    if method is None:
        method = "fcam" if kind == "fcam" else "cam"
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {METHODS}, got {method!r}")
    graph_model: nn.Module = model
    if method != "fcam" and isinstance(model, FCAM):  # kind "fcam"
        graph_model = model.classifier  # baselines run on the F-CAM checkpoint's frozen classifier
    if size is None:
        size = (int(ck.input_size[0]), int(ck.input_size[1]))
    if tau is None:
        tau = float(ck.threshold) if ck.threshold is not None else DEFAULT_TAU
    class_names = tuple(ck.class_names or [str(i) for i in range(int(ck.num_classes))])
    mean_r, mean_g, mean_b = (float(v) for v in ck.mean)  # 3 values each (load_checkpoint checked)
    std_r, std_g, std_b = (float(v) for v in ck.std)
    meta = ModelMetadata(
        class_names=class_names,
        input_size=(int(size[0]), int(size[1])),
        mean=(mean_r, mean_g, mean_b),
        std=(std_r, std_g, std_b),
        tau=float(tau),
        method=method,
        postprocess=postprocess,
        max_boxes=max_boxes if postprocess == "custom-op" else 0,
        arch=str(ck.arch),
        fcam_deploy_version=__version__,
        # the folder name and the weights' digest identify the source; no absolute path is shipped in the model
        extra={
            "checkpoint": Path(checkpoint).resolve().name,
            "checkpoint_kind": str(kind),
            **({"checkpoint_sha256": ck_sha} if ck_sha else {}),
        },
    )
    meta.validate(checkpoint)
    graph = LocalizationGraph(
        graph_model, method, postprocess, meta.input_size, meta.mean, meta.std, meta.tau, max_boxes=max_boxes
    )
    return graph, meta
