"""The runtime's post-processing: model-size maps -> each image's original size, mask and boxes, natively.

One call per batch, one output size per image, the op's semantics (kernels/README.md) with ``normalize=False``
(the graph's ``map`` output already is in [0, 1]): bilinear upsampling (``align_corners=False``) of the model-size
map to the original ``(h, w)``, mask ``full > tau * max(full)``, 8-connected components boxed in original pixels,
largest first. Every backend runs the same C++ launcher (``camPostprocessCpuSized``):

* :func:`native_postprocess` through the compiled core of the wheel (``fcam_deploy._native_cpu``, no torch) — the
  ONNX Runtime and TensorRT backends;
* :func:`torch_op_postprocess` through the torch op ``torch.ops.fcam.cam_postprocess_sized`` — the torch backend,
  when the optional torch extension is built (``make kernels``); otherwise the torch backend uses the compiled
  core too (the same launcher, so the same bits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from fcam_deploy.ops.cpu import SizedResult, postprocess_to_sizes

__all__ = ["Postprocessor", "native_postprocess", "select_postprocessor", "torch_op_postprocess"]

log = logging.getLogger(__name__)

#: ``(maps (N, H, W) float32 in [0, 1], sizes [(h, w)] * N, tau, max_boxes, threads) -> SizedResult``
Postprocessor = Callable[[np.ndarray, Sequence[tuple[int, int]], float, int, int], SizedResult]


def native_postprocess(
    maps: np.ndarray, sizes: Sequence[tuple[int, int]], tau: float, max_boxes: int, threads: int
) -> SizedResult:
    """Post-process through the compiled core (``threads`` workers over maps; 0 = all cores)."""
    return postprocess_to_sizes(maps, sizes, tau, max_boxes=max_boxes, normalize=False, threads=threads)


def torch_op_postprocess(
    maps: np.ndarray, sizes: Sequence[tuple[int, int]], tau: float, max_boxes: int, threads: int
) -> SizedResult:
    """Post-process through ``torch.ops.fcam.cam_postprocess_sized`` (torch's own thread pool; ``threads`` unused)."""
    import torch

    from fcam_deploy.ops import names

    op = getattr(torch.ops, names.TORCH_NAMESPACE).cam_postprocess_sized
    flat = [int(v) for hw in sizes for v in hw]
    fulls, masks, boxes, count = op(
        torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)),
        flat,
        float(tau),
        False,
        False,
        int(max_boxes),
        False,
    )
    return SizedResult(
        [f.numpy() for f in fulls], [m.numpy().view(np.bool_) for m in masks], boxes.numpy(), count.numpy()
    )


def select_postprocessor(backend: str) -> Postprocessor:
    """The post-processor of a backend: the torch op for ``torch`` when its extension loads, else the core."""
    if backend == "torch":
        from fcam_deploy.ops import native_status

        status = native_status()
        if status.available:
            import torch

            from fcam_deploy.ops import names

            if hasattr(getattr(torch.ops, names.TORCH_NAMESPACE), "cam_postprocess_sized"):
                return torch_op_postprocess
        log.debug("torch backend post-processes through fcam_deploy._native_cpu (%s)", status.reason)
    return native_postprocess
