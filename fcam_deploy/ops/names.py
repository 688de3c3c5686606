"""Shared names of the ``cam_postprocess`` op, mirrored in ``kernels/include/fcam/names.h``.

``tests/ops/test_names.py`` parses the header and checks that both tables agree; change both together.
"""

from __future__ import annotations

from typing import Final

TORCH_NAMESPACE: Final = "fcam"
TORCH_OP: Final = "cam_postprocess"
TORCH_LATTICE_OP: Final = "lattice_filter"
ONNX_DOMAIN: Final = "fcam"
ONNX_OP: Final = "CamPostprocess"
#: Version 2: the node outputs the mask as int32 0/1 (a TensorRT plugin may not declare UINT8) and the exported
#: graph casts it to uint8 with a standard Cast; version-1 graphs (uint8 node output) must be re-exported.
ONNX_OPSET_VERSION: Final = 2
TRT_PLUGIN_NAME: Final = "FcamCamPostprocess"
TRT_PLUGIN_VERSION: Final = "1"
TRT_PLUGIN_NAMESPACE: Final = "fcam"
ORT_LIBRARY: Final = "libfcam_ort_ops.so"
TRT_LIBRARY: Final = "libfcam_trt_plugins.so"
ORT_ENTRY_POINT: Final = "RegisterCustomOps"
ATTR_OUT_H: Final = "out_h"
ATTR_OUT_W: Final = "out_w"
ATTR_TAU: Final = "tau"
ATTR_QUANTIZE_UINT8: Final = "quantize_uint8"
ATTR_PROTOCOL_BOXES: Final = "protocol_boxes"
ATTR_MAX_BOXES: Final = "max_boxes"
ATTR_NORMALIZE: Final = "normalize"

#: Name -> value, in the order of names.h (``kTorchNamespace`` <-> ``TORCH_NAMESPACE``, ...).
TABLE: Final[dict[str, str | int]] = {
    "TORCH_NAMESPACE": TORCH_NAMESPACE,
    "TORCH_OP": TORCH_OP,
    "TORCH_LATTICE_OP": TORCH_LATTICE_OP,
    "ONNX_DOMAIN": ONNX_DOMAIN,
    "ONNX_OP": ONNX_OP,
    "ONNX_OPSET_VERSION": ONNX_OPSET_VERSION,
    "TRT_PLUGIN_NAME": TRT_PLUGIN_NAME,
    "TRT_PLUGIN_VERSION": TRT_PLUGIN_VERSION,
    "TRT_PLUGIN_NAMESPACE": TRT_PLUGIN_NAMESPACE,
    "ORT_LIBRARY": ORT_LIBRARY,
    "TRT_LIBRARY": TRT_LIBRARY,
    "ORT_ENTRY_POINT": ORT_ENTRY_POINT,
    "ATTR_OUT_H": ATTR_OUT_H,
    "ATTR_OUT_W": ATTR_OUT_W,
    "ATTR_TAU": ATTR_TAU,
    "ATTR_QUANTIZE_UINT8": ATTR_QUANTIZE_UINT8,
    "ATTR_PROTOCOL_BOXES": ATTR_PROTOCOL_BOXES,
    "ATTR_MAX_BOXES": ATTR_MAX_BOXES,
    "ATTR_NORMALIZE": ATTR_NORMALIZE,
}

#: Fully qualified torch op name.
TORCH_QUALNAME: Final = f"{TORCH_NAMESPACE}::{TORCH_OP}"
