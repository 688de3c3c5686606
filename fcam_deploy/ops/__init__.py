"""``cam_postprocess``: CAM map -> full-resolution map, mask and boxes (spec: ``kernels/README.md``).

One op, several runtimes, all over the same C++ launcher:

* :func:`postprocess_to_sizes` (:mod:`.cpu`): NumPy in and out, the compiled core ``fcam_deploy._native_cpu``
  that every wheel contains; one output size per map (the lean runtime's original-resolution post-processing).
  No torch.
* :func:`cam_postprocess` (:mod:`.torch_op`): the torch op ``torch.ops.fcam.cam_postprocess`` (CPU + CUDA kernels
  of the optional extension built by ``make kernels``), the NumPy reference as fallback.
* the ONNX Runtime custom op ``fcam::CamPostprocess`` and the TensorRT plugin ``FcamCamPostprocess`` (optional
  builds; :func:`ort_library_path`, :func:`trt_plugin_path`);
* :func:`cam_postprocess_reference` (:mod:`._reference`): pure NumPy + scipy + cv2, the test oracle.

Names are imported lazily (PEP 562): ``import fcam_deploy.ops`` imports neither torch nor NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fcam_deploy._lazy import lazy_exports
from fcam_deploy.ops import names  # the name table: a few constants, no imports

if TYPE_CHECKING:
    from fcam_deploy.ops._native import (
        NativeStatus,
        extension_path,
        kernels_build_dir,
        launcher_test_path,
        native_status,
        ort_library_path,
        trt_plugin_path,
    )
    from fcam_deploy.ops._reference import PostprocessResult, axis_taps, cam_postprocess_reference
    from fcam_deploy.ops.cpu import SizedResult, native_cpu_available, postprocess_to_sizes
    from fcam_deploy.ops.torch_op import CamPostprocess, cam_postprocess, validate_arguments

_EXPORTS: dict[str, str] = {
    "NativeStatus": "_native",
    "extension_path": "_native",
    "kernels_build_dir": "_native",
    "launcher_test_path": "_native",
    "native_status": "_native",
    "ort_library_path": "_native",
    "trt_plugin_path": "_native",
    "PostprocessResult": "_reference",
    "axis_taps": "_reference",
    "cam_postprocess_reference": "_reference",
    "SizedResult": "cpu",
    "native_cpu_available": "cpu",
    "postprocess_to_sizes": "cpu",
    "CamPostprocess": "torch_op",
    "cam_postprocess": "torch_op",
    "validate_arguments": "torch_op",
}

__all__ = [
    "CamPostprocess",
    "NativeStatus",
    "PostprocessResult",
    "SizedResult",
    "axis_taps",
    "cam_postprocess",
    "cam_postprocess_reference",
    "extension_path",
    "kernels_build_dir",
    "launcher_test_path",
    "names",
    "native_cpu_available",
    "native_status",
    "ort_library_path",
    "postprocess_to_sizes",
    "trt_plugin_path",
    "validate_arguments",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
