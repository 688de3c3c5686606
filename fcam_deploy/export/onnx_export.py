"""ONNX export of a checkpoint as one localization graph (``fcam export``).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the torch >= 2.9 default; the TorchScript exporter is
deprecated). The fused post-processing node is emitted with ``torch.onnx.ops.symbolic_multi_out`` from inside
:class:`~fcam_deploy.runtime.torch_graph.LocalizationGraph` while exporting, so no global ONNX schema or symbolic
registration is needed; in eager mode the same module calls ``fcam_deploy.ops.cam_postprocess``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from fcam_deploy._io import atomic_path
from fcam_deploy.errors import CheckpointError, ConfigError, ModelFormatError
from fcam_deploy.ops import names
from fcam_deploy.runtime.base import INPUT_NAME, POSTPROCESS_MODES, ModelMetadata
from fcam_deploy.runtime.torch_graph import CUSTOM_OP_DOMAIN, build_graph

# build_graph (the checkpoint -> LocalizationGraph loader of the torch backend) is re-exported: export uses it
__all__ = ["DEFAULT_OPSET", "build_graph", "export_checkpoint", "export_graph", "read_onnx_metadata"]

log = logging.getLogger(__name__)

#: Default ONNX opset (ONNX Runtime >= 1.16 and TensorRT 10.x both take 18).
DEFAULT_OPSET = 18


def export_graph(
    graph: nn.Module,
    meta: ModelMetadata,
    out: Path,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> ModelMetadata:
    """Export ``graph`` (a :class:`LocalizationGraph`) to ``out`` with ``meta`` as ``metadata_props``.

    The file is written atomically (:func:`fcam_deploy._io.atomic_path`: temp file, fsync, rename, umask mode)
    after ``onnx.checker.check_model(full_check=True)``.
    Returns the metadata actually written (``opset`` and ``dynamic_batch`` filled in).

    Raises:
        ConfigError: opset out of range. ModelFormatError: the exported graph fails the checker.
    """
    import onnx

    if not 18 <= opset <= 23:
        raise ConfigError(
            f"--opset must be in [18, 23] (the dynamo exporter's native range; its down-conversion to 17 fails on "
            f"the graph's ReduceMax), got {opset}"
        )
    meta = ModelMetadata(**{**meta.__dict__, "opset": int(opset), "dynamic_batch": bool(dynamic_batch)})
    h, w = meta.input_size
    example = torch.randint(0, 256, (2 if dynamic_batch else 1, h, w, 3), dtype=torch.uint8)
    dynamic_shapes = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    graph = graph.eval()
    chatter = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(meta.output_names),
            opset_version=opset,
            optimize=True,
            verbose=False,
            dynamic_shapes=dynamic_shapes,
        )
    log.debug("torch.onnx.export: %s", chatter.getvalue())
    if program is None:
        raise ModelFormatError("torch.onnx.export returned no program")
    model = program.model_proto
    for node in model.graph.node:  # exporter debug info (local stack traces, fx nodes) is not shipped
        del node.metadata_props[:]
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise ModelFormatError(f"the exporter wrote opset {got}, not the requested {opset}; choose --opset {got}")
    model.producer_name = "fcam-deploy"
    model.producer_version = meta.fcam_deploy_version
    model.doc_string = (
        f"fcam-deploy localization graph: {meta.method} map, post-processing {meta.postprocess}; "
        "input images uint8 (N,H,W,3) RGB, normalisation inside"
    )
    del model.metadata_props[:]
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if meta.postprocess == "custom-op" and not any(o.domain == CUSTOM_OP_DOMAIN for o in model.opset_import):
        model.opset_import.add(domain=CUSTOM_OP_DOMAIN, version=names.ONNX_OPSET_VERSION)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelFormatError(f"exported graph fails onnx.checker: {exc}") from exc
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            onnx.save_model(model, str(tmp))
    except IsADirectoryError as exc:
        raise ConfigError(f"--out {out} is a directory; give a file path (e.g. {out / 'model.onnx'})") from exc
    log.info("wrote %s (%s, postprocess %s, opset %d)", out, meta.method, meta.postprocess, opset)
    return meta


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    method: str | None = None,
    postprocess: str = "onnx",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    size: tuple[int, int] | None = None,
    max_boxes: int = 8,
) -> ModelMetadata:
    """``fcam export``: checkpoint directory -> one ONNX localization graph. See :func:`build_graph`."""
    if postprocess not in POSTPROCESS_MODES:
        raise ConfigError(f"--postprocess must be one of {POSTPROCESS_MODES}, got {postprocess!r}")
    if not Path(checkpoint).is_dir():
        raise CheckpointError(f"{checkpoint}: not a checkpoint directory (expected config.json + model.safetensors)")
    graph, meta = build_graph(checkpoint, method, postprocess, size, max_boxes)
    return export_graph(graph, meta, out, opset=opset, dynamic_batch=dynamic_batch)


def read_onnx_metadata(path: Path) -> ModelMetadata:
    """Read and validate the fcam-deploy metadata of an ONNX file (weights are not loaded).

    Raises:
        ModelFormatError: not an ONNX file, or not written by a compatible ``fcam export``.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: no such model file") from exc
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise ModelFormatError(f"{path}: not a readable ONNX model ({exc.__class__.__name__}: {exc})") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelFormatError(f"{path}: not an ONNX model (no graph); is it a TensorRT .plan or a checkpoint?")
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=path)
