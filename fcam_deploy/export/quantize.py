"""INT8 post-training quantization of an exported localization graph for ONNX Runtime on CPU (``fcam quantize``).

Uses ONNX Runtime's own static quantizer (``onnxruntime.quantization``): QDQ format, uint8 activations and int8
per-channel weights (U8S8: the VNNI / AMX integer kernels of ONNX Runtime's CPU provider), calibration on real
images of the training split (uint8 NHWC, resized like the runtime), MinMax or percentile/entropy calibration.
Only Conv / MatMul / Gemm get Q/DQ nodes: the input normalisation, the map normalisation, the softmax / argmax and
the mask threshold stay fp32, so the graph's contract (inputs, outputs, metadata) is the fp32 graph's. The
metadata gains ``fcam_deploy.precision = int8`` and the calibration settings.

(For TensorRT, build INT8 engines from Q/DQ graphs made by ModelOpt: ``export/tools/precision.py``.)

Whether it may be shipped is measured, not assumed: ``fcam bench`` reports the INT8 graph's latency next to fp32
and its MaxBoxAccV2 / PxAP difference to the fp32 model on the test split.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fcam_deploy._io import atomic_path
from fcam_deploy.errors import ConfigError, InputError, ModelFormatError
from fcam_deploy.runtime.base import INPUT_NAME, ModelMetadata

__all__ = ["CALIBRATION_METHODS", "QUANTIZED_OPS", "quantize_int8"]

log = logging.getLogger(__name__)

#: Operator types that get Q/DQ nodes (everything else stays fp32).
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
#: ``onnxruntime.quantization.CalibrationMethod`` names accepted by :func:`quantize_int8`.
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")


def _metadata_of(model: Any, source: Path) -> ModelMetadata:
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=source)


def quantize_int8(
    src: Path,
    dst: Path,
    calibration: Sequence[np.ndarray] | np.ndarray,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    exclude_nodes: Sequence[str] = (),
) -> ModelMetadata:
    """Write an INT8 (QDQ) copy of the fp32 graph ``src`` to ``dst``.

    Args:
        src: an fp32 ``.onnx`` written by ``fcam export`` (any post-processing mode without the custom node).
        dst: the INT8 ``.onnx`` to write (atomically).
        calibration: uint8 ``(N, H, W, 3)`` batches (or one array) at the model's input size, from the training
            split: the activation ranges are taken from them. 32-256 images are typical.
        method: ``minmax``, ``percentile`` (99.999 %) or ``entropy``.
        per_channel: per-output-channel weight scales (recommended for depthwise convolutions).
        exclude_nodes: node names to keep in fp32 (e.g. the last decoder convolution, if it proves sensitive).

    Returns:
        The metadata written to ``dst`` (``extra`` holds ``precision``, ``calibration_images``, ``calibration``).

    Raises:
        ModelFormatError: ``src`` is not an fcam-deploy fp32 graph, or has the fused custom node.
        InputError: calibration data of the wrong dtype / shape.
        ConfigError: unknown calibration method.
        BackendUnavailableError: ``onnx`` / ``onnxruntime.quantization`` missing (the ``train`` extra).
    """
    from fcam_deploy._extras import require_extra

    require_extra("train", "INT8 quantization")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    try:
        model = onnx.load_model(str(src), load_external_data=False)
    except Exception as exc:  # DecodeError / OSError from protobuf
        raise ModelFormatError(f"{src}: not a readable ONNX model ({exc})") from exc
    meta = _metadata_of(model, src)
    if meta.extra.get("precision", "fp32") != "fp32":
        raise ModelFormatError(f"{src}: already {meta.extra['precision']}; quantize the fp32 export")
    if meta.postprocess == "custom-op":
        raise ModelFormatError(
            f"{src}: a graph with the fused fcam::CamPostprocess node cannot be calibrated on CPU; quantize the "
            "--postprocess none (or onnx) export (the runtime post-processes natively anyway)"
        )
    batches = [calibration] if isinstance(calibration, np.ndarray) else list(calibration)
    h, w = meta.input_size
    for i, b in enumerate(batches):
        if not isinstance(b, np.ndarray) or b.dtype != np.uint8 or b.ndim != 4 or b.shape[1:] != (h, w, 3):
            raise InputError(
                f"calibration batch {i} must be uint8 (n, {h}, {w}, 3) (images resized to the model size), got "
                f"{getattr(b, 'dtype', type(b).__name__)} {getattr(b, 'shape', '')}"
            )
        if not meta.dynamic_batch and b.shape[0] != 1:
            raise InputError(f"{src} has a fixed batch of 1: pass calibration batches of one image")
    n_images = sum(int(b.shape[0]) for b in batches)
    if n_images == 0:
        raise InputError("no calibration images (pass at least one uint8 (n, H, W, 3) batch)")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {INPUT_NAME: np.ascontiguousarray(b)}

    calib = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fcam-quant-", dir=dst.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "int8.onnx"
        # shape inference + the graph optimisations ORT's quantizer expects (fusions before Q/DQ placement)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(q),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=list(exclude_nodes),
            calibrate_method=calib,
        )
        out = onnx.load_model(str(q))
        extra = {
            **dict(meta.extra),
            "precision": "int8",
            "calibration_images": str(n_images),
            "calibration": f"{method}, per_channel={per_channel}, U8S8 QDQ, ops {'/'.join(QUANTIZED_OPS)}",
        }
        new_meta = ModelMetadata(**{**meta.__dict__, "extra": extra})
        del out.metadata_props[:]
        for k, v in new_meta.to_props().items():
            out.metadata_props.add(key=k, value=v)
        out.producer_name = "fcam-deploy"
        with atomic_path(dst) as tmp_out:
            onnx.save_model(out, str(tmp_out))
    log.info("wrote %s (int8, %d calibration images, %s)", dst, n_images, method)
    return new_meta
