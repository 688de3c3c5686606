"""The exported module, as the export side names it: :class:`LocalizationGraph` and :func:`build_graph` live in
:mod:`fcam_deploy.runtime.torch_graph` (the torch backend runs the same module eagerly); re-exported here so the
export API reads ``fcam_deploy.export.graph.LocalizationGraph``."""

from __future__ import annotations

from fcam_deploy.runtime.torch_graph import (
    CUSTOM_OP_DOMAIN,
    CUSTOM_OP_TYPE,
    NODE_MASK_DTYPE,
    LocalizationGraph,
    build_graph,
)

__all__ = ["CUSTOM_OP_DOMAIN", "CUSTOM_OP_TYPE", "NODE_MASK_DTYPE", "LocalizationGraph", "build_graph"]
