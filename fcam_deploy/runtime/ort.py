"""The ``onnxruntime`` backend, and the lookup of the ``fcam`` custom-op library for ``custom-op`` graphs."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError
from fcam_deploy.runtime.base import (
    INPUT_NAME,
    GraphOutputs,
    ModelMetadata,
    check_runner_input,
)

__all__ = ["ORT_OPS_ENV", "OrtRunner", "make_session", "resolve_ort_ops_library", "session_metadata"]

log = logging.getLogger(__name__)

#: Environment variable naming the ONNX Runtime custom-op library (``libfcam_ort_ops.so``).
ORT_OPS_ENV = "FCAM_ORT_OPS"
_LIB_NAME = "libfcam_ort_ops.so"
_CUSTOM_OP = "CamPostprocess"


def resolve_ort_ops_library(explicit: str | Path | None = None) -> Path:
    """Locate ``libfcam_ort_ops.so``: the explicit path, else ``$FCAM_ORT_OPS``, else the path that
    ``fcam_deploy.ops`` reports for the library built by ``make kernels``. Never guesses further.

    Raises:
        BackendUnavailableError: no library found, or the named file does not exist.
    """
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        candidates.append(("plugin_library argument", Path(explicit)))
    elif os.environ.get(ORT_OPS_ENV):
        candidates.append((f"${ORT_OPS_ENV}", Path(os.environ[ORT_OPS_ENV])))
    else:
        try:
            from fcam_deploy import ops

            finder = getattr(ops, "ort_library_path", None)
            found = finder() if callable(finder) else None
        except ImportError:
            found = None
        if found is not None:
            candidates.append(("fcam_deploy.ops.ort_library_path()", Path(found)))
    for origin, path in candidates:
        if path.is_file():
            return path
        raise BackendUnavailableError(
            f"ONNX Runtime custom-op library {path} (from {origin}) does not exist (fix: build it with "
            f"`make kernels`, then pass plugin_library= or set {ORT_OPS_ENV}=/path/to/{_LIB_NAME})"
        )
    raise BackendUnavailableError(
        f"this graph has the fused fcam::CamPostprocess node, which needs the custom-op library {_LIB_NAME} "
        f"(fix: build it with `make kernels` and pass plugin_library= / --plugins, or set {ORT_OPS_ENV}; or "
        "export with --postprocess onnx, which runs on any ONNX runtime)"
    )


def _device_index(device: str) -> int:
    """N of ``cuda:N`` / ``tensorrt:N`` (0 without ``:N``)."""
    if ":" not in device:
        return 0
    text = device.split(":", 1)[1]
    if not text.isdigit() or len(text) > 6:
        raise ConfigError(f"device {device!r}: the index after ':' must be a small non-negative integer (e.g. cuda:0)")
    return int(text)


def _providers_for(device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        idx = _device_index(device)
        return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]
    if device == "tensorrt" or device.startswith("tensorrt:"):
        idx = _device_index(device)
        return [
            ("TensorrtExecutionProvider", {"device_id": idx}),
            ("CUDAExecutionProvider", {"device_id": idx}),
            "CPUExecutionProvider",
        ]
    raise ConfigError(f"device {device!r} is not one of cpu, cuda[:N], tensorrt[:N] for ONNX Runtime")


def make_session(
    path: Path,
    device: str = "cpu",
    plugin_library: str | Path | None = None,
    needs_custom_ops: bool = False,
    intra_op_threads: int = 0,
    spinning: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` with the custom-op library registered when needed.

    Args:
        path: the ``.onnx`` file.
        device: ``cpu``, ``cuda[:N]`` or ``tensorrt[:N]``.
        plugin_library: ``libfcam_ort_ops.so``; registered when given, or when ``needs_custom_ops``.
        needs_custom_ops: the graph has the fused ``fcam::CamPostprocess`` node.
        intra_op_threads: ORT's intra-op threads (0 = ORT's default, one per physical core).
        spinning: let idle intra-op threads spin-wait (ORT's default). Off by default here: a spinning pool takes
            the cores from the next stage (post-processing, another runtime's pool) for a while after each run.

    Raises:
        BackendUnavailableError: onnxruntime missing or the custom-op library missing/unloadable.
        ModelFormatError: ONNX Runtime rejects the file.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError("onnxruntime is not installed (fix: pip install onnxruntime)") from exc
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if intra_op_threads:
        so.intra_op_num_threads = int(intra_op_threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    if needs_custom_ops or plugin_library is not None:
        lib = resolve_ort_ops_library(plugin_library)
        try:
            so.register_custom_ops_library(str(lib))
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types here
            raise BackendUnavailableError(
                f"ONNX Runtime could not load the custom-op library {lib}: {exc} (fix: rebuild it against this "
                f"onnxruntime {ort.__version__} with `make kernels`)"
            ) from exc
    available = set(ort.get_available_providers())
    providers = [p for p in _providers_for(device) if (p if isinstance(p, str) else p[0]) in available]
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # InvalidGraph / InvalidProtobuf / NotImplemented are ORT-private classes
        text = str(exc)
        if _CUSTOM_OP in text:
            raise _MissingCustomOps(
                f"{path}: ONNX Runtime has no kernel for fcam::{_CUSTOM_OP} ({text.strip()[:200]}); "
                f"fix: pass the custom-op library ({_LIB_NAME}) or set {ORT_OPS_ENV}"
            ) from exc
        if not Path(path).is_file():
            raise ModelFormatError(f"{path}: no such model file") from exc
        raise ModelFormatError(f"{path}: ONNX Runtime cannot load this model: {text.strip()[:300]}") from exc


def _check_graph_shapes(session: Any, meta: ModelMetadata, path: Path) -> None:
    """The graph's static input size and class count must be the metadata's (a tampered or mismatched file fails
    here with a typed error instead of inside ONNX Runtime at the first ``run``)."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelFormatError(f"{path}: expected one graph input {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    shape = list(inputs[0].shape)
    if len(shape) != 4:
        raise ModelFormatError(f"{path}: graph input {INPUT_NAME!r} has rank {len(shape)}, expected (N, H, W, 3)")
    for axis, want in ((1, meta.input_size[0]), (2, meta.input_size[1]), (3, 3)):
        if isinstance(shape[axis], int) and shape[axis] != want:
            raise ModelFormatError(
                f"{path}: graph input is {shape}, but its metadata says input_size {list(meta.input_size)} "
                "(the file was edited or mixed up; re-export it with `fcam export`)"
            )
    logits = session.get_outputs()[0].shape
    if len(logits) == 2 and isinstance(logits[1], int) and logits[1] != meta.num_classes:
        raise ModelFormatError(
            f"{path}: the graph has {logits[1]} classes but its metadata names {meta.num_classes} "
            f"({list(meta.class_names)[:5]}...); re-export it with `fcam export`"
        )


class _MissingCustomOps(BackendUnavailableError):
    """The graph has the fused node but no custom-op library was registered."""


def session_metadata(session: Any, source: str | Path) -> ModelMetadata:
    """The fcam-deploy metadata of a loaded session (ONNX ``metadata_props``, read by ONNX Runtime itself).

    Raises:
        ModelFormatError: not written by a compatible ``fcam export``.
    """
    return ModelMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map), source=source)


class OrtRunner:
    """Runs an exported ``.onnx`` localization graph in ONNX Runtime (implements ``Runner``).

    Args:
        path: the ``.onnx`` file written by ``fcam export``.
        device: ``cpu`` (default), ``cuda[:N]`` or ``tensorrt[:N]`` (ORT's execution providers).
        plugin_library: ``libfcam_ort_ops.so`` for ``custom-op`` graphs (else ``$FCAM_ORT_OPS``, else the library
            ``make kernels`` built, looked up only when the graph needs it).
        threads: ORT intra-op threads (0 = ORT's default).
        spinning: ORT's spin-waiting of idle threads (off: see :func:`make_session`).

    The metadata is read by ONNX Runtime from the loaded session (no ``onnx`` package needed).

    After loading, ``providers`` lists what ORT actually uses (``session.get_providers()``); when a GPU provider
    was requested but ORT fell back to the CPU, ``fell_back_to_cpu`` is True and a warning is logged.
    ``InferenceSession.run`` is thread-safe, so this runner is too.

    Raises:
        ModelFormatError: not an fcam-deploy ONNX model, or of another format version.
        BackendUnavailableError: onnxruntime or the custom-op library is missing.
    """

    backend = "onnxruntime"
    thread_safe = True

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        plugin_library: str | Path | None = None,
        threads: int = 0,
        spinning: bool = False,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelFormatError(f"{path}: no such model file")
        self._device = device
        try:
            # The library is registered up front only when passed explicitly; a graph with the fused node then
            # finds it through $FCAM_ORT_OPS or the `make kernels` build (a bogus $FCAM_ORT_OPS never breaks a
            # standard-op graph).
            self._session = make_session(path, device, plugin_library, False, threads, spinning)
        except _MissingCustomOps:
            self._session = make_session(path, device, None, True, threads, spinning)
        self._meta = session_metadata(self._session, path)
        names = tuple(o.name for o in self._session.get_outputs())
        if names != self._meta.output_names:
            raise ModelFormatError(
                f"{path}: graph outputs {names} do not match its metadata ({self._meta.output_names}); re-export it"
            )
        _check_graph_shapes(self._session, self._meta, path)
        self._providers = tuple(self._session.get_providers())
        requested = _providers_for(device)[0]
        requested_name = requested if isinstance(requested, str) else requested[0]
        self._fell_back = requested_name != "CPUExecutionProvider" and requested_name not in self._providers
        if self._fell_back:
            log.warning(
                "%s: requested %s but ONNX Runtime runs on %s (fell back to CPU; install onnxruntime-gpu and the "
                "CUDA/cuDNN libraries it names, or use device='cpu')",
                path,
                requested_name,
                ", ".join(self._providers),
            )
        self._closed = threading.Event()

    @property
    def metadata(self) -> ModelMetadata:
        return self._meta

    @property
    def device(self) -> str:
        return "cpu" if self._fell_back else self._device

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    @property
    def fell_back_to_cpu(self) -> bool:
        return self._fell_back

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession``."""
        return self._session

    def run(self, images: np.ndarray) -> GraphOutputs:
        """See ``Runner.run``: uint8 (N, H, W, 3) -> dict of host arrays."""
        if self._closed.is_set():
            raise RuntimeError("OrtRunner.run after close()")
        images = check_runner_input(images, self._meta)
        outs = self._session.run(None, {INPUT_NAME: images})
        return dict(zip(self._meta.output_names, outs, strict=True))

    def close(self) -> None:
        self._closed.set()
        self._session = None
