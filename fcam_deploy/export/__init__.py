"""Export a checkpoint as one deployable graph, check its parity, build TensorRT engines.

* :func:`export_checkpoint` / :func:`export_graph` / :func:`build_graph` -- ONNX export (``fcam export``),
  :class:`LocalizationGraph` the exported module, :func:`read_onnx_metadata` its metadata;
* :func:`run_parity` -- ONNX Runtime vs PyTorch through Polygraphy (``fcam parity``);
* :class:`ExportProfile` / :func:`load_profile` -- deploy profiles (``export/profiles/*.toml``);
* :mod:`fcam_deploy.export.tensorrt` -- TensorRT engine building (``fcam build-engine``).

Names are imported lazily (nothing heavy at ``import fcam_deploy.export``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fcam_deploy._lazy import lazy_exports

if TYPE_CHECKING:
    from fcam_deploy.export.graph import LocalizationGraph, build_graph
    from fcam_deploy.export.onnx_export import export_checkpoint, export_graph, read_onnx_metadata
    from fcam_deploy.export.parity import ParityReport, run_parity
    from fcam_deploy.export.profiles import ExportProfile, load_profile

_EXPORTS: dict[str, str] = {
    "LocalizationGraph": "graph",
    "build_graph": "graph",
    "export_checkpoint": "onnx_export",
    "export_graph": "onnx_export",
    "read_onnx_metadata": "onnx_export",
    "ParityReport": "parity",
    "run_parity": "parity",
    "ExportProfile": "profiles",
    "load_profile": "profiles",
}

__all__ = [
    "ExportProfile",
    "LocalizationGraph",
    "ParityReport",
    "build_graph",
    "export_checkpoint",
    "export_graph",
    "load_profile",
    "read_onnx_metadata",
    "run_parity",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
