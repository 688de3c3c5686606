"""TensorRT backend: run a ``.plan`` built by ``fcam build-engine`` behind the :class:`~fcam_deploy.runtime.base.Runner`
contract.

Execution uses the TensorRT 10/11 name-based API only: ``deserialize_cuda_engine`` -> ``create_execution_context``
-> ``set_input_shape`` / ``set_tensor_address`` for every I/O tensor -> ``execute_async_v3(stream)`` -> stream
synchronize. Device buffers and the stream come from cuda-python when it is installed (the ``gpu`` extra; no torch
needed), else from torch CUDA tensors; never pycuda. ``tensorrt`` and CUDA are touched only when a runner is opened.

Plugin libraries (``libfcam_trt_plugins.so``, for graphs exported with ``--postprocess custom-op``) are loaded by
explicit path: the ``plugin_library`` argument, else the ``FCAM_TRT_PLUGINS`` environment variable
(``os.pathsep``-separated), else the path recorded in the plan's sidecar if that file still exists. A plan built with
``--serialize-plugins`` carries its plugin code and needs none of these.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from fcam_deploy.errors import BackendUnavailableError, InputError, ModelFormatError
from fcam_deploy.runtime.base import INPUT_NAME, GraphOutputs, ModelMetadata, check_runner_input

if TYPE_CHECKING:
    # annotations only; typed by tensorrt-stubs under `make typecheck-trt`, Any otherwise
    import tensorrt  # type: ignore[import-not-found, unused-ignore]
    from typing_extensions import Self

__all__ = ["PLUGINS_ENV", "TrtRunner", "open_runner", "resolve_plugin_libraries"]

log = logging.getLogger(__name__)

#: Environment variable naming TensorRT plugin libraries (``os.pathsep``-separated) when no path is passed.
PLUGINS_ENV = "FCAM_TRT_PLUGINS"

#: TensorRT ``DataType`` member name -> torch dtype attribute name.
_TRT_TO_TORCH = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def resolve_plugin_libraries(
    explicit: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
    recorded: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
) -> list[Path]:
    """Decide which plugin libraries to load, in this order: ``explicit``; ``$FCAM_TRT_PLUGINS``; ``recorded``
    (paths the sidecar recorded at build time), each only if it exists.

    Args:
        explicit: a path or paths given by the caller (``None``: not given).
        recorded: paths from the plan's sidecar.
        env: the environment to read (default ``os.environ``).

    Returns:
        Resolved absolute paths (possibly empty: the plan then needs no plugins or embeds them).

    Raises:
        BackendUnavailableError: an explicit or environment path does not exist, or only the recorded paths were
            available and one of them is gone.
    """
    environ = os.environ if env is None else env
    if explicit is not None:
        items = [explicit] if isinstance(explicit, str | os.PathLike) else list(explicit)
        source = "plugin_library"
    elif environ.get(PLUGINS_ENV):
        items = [p for p in environ[PLUGINS_ENV].split(os.pathsep) if p]
        source = f"${PLUGINS_ENV}"
    else:
        items = list(recorded)
        source = "the engine sidecar (build-time path)"
    out: list[Path] = []
    for item in items:
        path = Path(item).expanduser().resolve()
        if not path.is_file():
            raise BackendUnavailableError(
                f"TensorRT plugin library {path} (from {source}) does not exist; build it with `make kernels` and "
                f"pass its path as plugin_library or set {PLUGINS_ENV}"
            )
        out.append(path)
    return out


def _parse_device(device: str) -> int:
    text = str(device).strip().lower()
    if text == "cuda":
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise BackendUnavailableError(
        f"the TensorRT backend runs on CUDA devices only, got device={device!r}; use 'cuda' or 'cuda:N', or "
        "backend='onnxruntime' for the CPU"
    )


class _TorchCudaMemory:
    """Device buffers and the stream of one runner through torch: CUDA tensors on ``cuda:index``, one torch stream
    (torch's caching allocator makes the per-call buffers cheap). Used when cuda-python is absent."""

    def __init__(self, index: int) -> None:
        import torch

        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"the TensorRT backend needs CUDA device {index}, but torch sees "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA device(s); run `fcam doctor`"
            )
        self._torch = torch
        self.index = index
        self._device = torch.device("cuda", index)
        with torch.cuda.device(index):
            self._stream = torch.cuda.Stream(device=self._device)

    def activate(self) -> contextlib.ExitStack:
        """Make this device and stream current (torch allocations and copies go there)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self._torch.cuda.device(self.index))
        stack.enter_context(self._torch.cuda.stream(self._stream))
        return stack

    def upload(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(array).to(self._device)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        return self._torch.empty(shape, dtype=getattr(self._torch, dtype), device=self._device)

    @staticmethod
    def address(buf: Any) -> int:
        return int(buf.data_ptr())

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    @staticmethod
    def download(buf: Any) -> np.ndarray:
        return np.asarray(buf.cpu().numpy())

    def release(self) -> None:
        """Nothing to do: the tensors return to torch's caching allocator when dropped."""


class _DeviceBuffer:
    """A cudaMallocAsync'ed block: device address, shape and dtype."""

    __slots__ = ("dtype", "nbytes", "ptr", "shape")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.ptr, self.shape, self.dtype = ptr, shape, dtype
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _import_cudart() -> ModuleType | None:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python >= 12.6 / older releases
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


class _CudaPythonMemory:
    """Device buffers and the stream of one runner through cuda-python (the ``gpu`` extra; no torch): one
    non-blocking stream, stream-ordered ``cudaMallocAsync`` / ``cudaFreeAsync`` buffers per call, copies with
    ``cudaMemcpyAsync``. Compiled and type-checked here; run only on a GPU box (``fcam doctor``)."""

    def __init__(self, index: int, cudart: ModuleType) -> None:
        self._rt = cudart
        self.index = index
        count = self._call("cudaGetDeviceCount", cudart.cudaGetDeviceCount())
        if index >= count:
            raise BackendUnavailableError(
                f"the TensorRT backend needs CUDA device {index}, but cuda-python sees {count} device(s)"
            )
        self._call("cudaSetDevice", cudart.cudaSetDevice(index))
        self._stream = self._call(
            "cudaStreamCreateWithFlags", cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
        )
        self._live: list[int] = []  # blocks allocated by this call, freed by release()
        self._hold: list[np.ndarray] = []  # host arrays an async copy still reads

    def _call(self, what: str, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            raise BackendUnavailableError(
                f"the TensorRT backend cannot use CUDA device {self.index}: {what} failed with {name} (no NVIDIA "
                "driver / GPU here, or a driver older than this CUDA runtime; run `fcam doctor`)"
            )
        return rest[0] if len(rest) == 1 else (rest or None)

    def activate(self) -> contextlib.ExitStack:
        """Make this device current for the calling thread."""
        self._call("cudaSetDevice", self._rt.cudaSetDevice(self.index))
        return contextlib.ExitStack()

    def empty(self, shape: tuple[int, ...], dtype: str) -> _DeviceBuffer:
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:  # bfloat16 has no NumPy dtype
            raise ModelFormatError(f"engine output dtype {dtype} has no NumPy equivalent; export fp32 outputs") from exc
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        ptr = int(self._call("cudaMallocAsync", self._rt.cudaMallocAsync(max(nbytes, 1), self._stream)))
        self._live.append(ptr)
        return _DeviceBuffer(ptr, tuple(shape), dt)

    def upload(self, array: np.ndarray) -> _DeviceBuffer:
        host = np.ascontiguousarray(array)
        buf = self.empty(tuple(host.shape), host.dtype.name)
        self._hold.append(host)
        self._call(
            "cudaMemcpyAsync",
            self._rt.cudaMemcpyAsync(
                buf.ptr, host.ctypes.data, buf.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream
            ),
        )
        return buf

    @staticmethod
    def address(buf: _DeviceBuffer) -> int:
        return buf.ptr

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))
        self._hold.clear()

    def download(self, buf: _DeviceBuffer) -> np.ndarray:
        host = np.empty(buf.shape, dtype=buf.dtype)
        self._call(
            "cudaMemcpyAsync",
            self._rt.cudaMemcpyAsync(
                host.ctypes.data, buf.ptr, buf.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream
            ),
        )
        self.synchronize()
        return host

    def release(self) -> None:
        """Free this call's blocks (stream-ordered, after the work queued before them)."""
        while self._live:
            self._call("cudaFreeAsync", self._rt.cudaFreeAsync(self._live.pop(), self._stream))


def _CudaMemory(index: int) -> _CudaPythonMemory | _TorchCudaMemory:
    """The runner's device memory: cuda-python when installed (the ``gpu`` extra, no torch needed), else torch.

    Raises:
        BackendUnavailableError: neither is installed, or the device is missing.
    """
    cudart = _import_cudart()
    if cudart is not None:
        return _CudaPythonMemory(index, cudart)
    if importlib.util.find_spec("torch") is not None:
        return _TorchCudaMemory(index)
    raise BackendUnavailableError(
        'the TensorRT backend needs cuda-python (pip install "fcam-deploy[gpu]") or torch for its device buffers'
    )


def _dims(d: tensorrt.Dims | Sequence[int]) -> tuple[int, ...]:
    """A TensorRT ``Dims`` (indexable, with ``len``; no ``__iter__`` in its declared API) as a tuple of ints."""
    return tuple(int(d[i]) for i in range(len(d)))


class TrtRunner:
    """One deserialized TensorRT engine plus one execution context on one CUDA device.

    ``run`` is serialised by an internal lock (one execution context is not re-entrant), so the runner is safe to
    share between threads. Use :func:`open_runner` to construct one.
    """

    def __init__(
        self,
        plan: Path,
        metadata: ModelMetadata,
        *,
        device: str = "cuda:0",
        plugin_paths: Sequence[Path] = (),
        host_code_allowed: bool = False,
        memory: Any = None,
    ) -> None:
        from fcam_deploy.runtime.trt_support import import_tensorrt, load_plugin_libraries

        self._metadata = metadata
        self._index = _parse_device(device)
        # ``memory`` replaces the torch-CUDA buffers (tests use host memory with a fake TensorRT).
        self._mem = _CudaMemory(self._index) if memory is None else memory
        trt_module = import_tensorrt()  # the typed error when TensorRT is missing or not the real bindings
        import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]  # that module, statically typed

        self._trt: ModuleType = trt_module
        self._lock = threading.Lock()
        self._closed = False

        with self._mem.activate():
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime: tensorrt.Runtime | None = trt.Runtime(self._logger)
            if self._runtime is None:
                raise BackendUnavailableError("TensorRT could not create a runtime (CUDA driver?); run `fcam doctor`")
            runtime = self._runtime
            self._plugin_handles = load_plugin_libraries(trt_module, runtime.get_plugin_registry(), plugin_paths)
            if host_code_allowed:
                # Plans built with --serialize-plugins carry plugin code; TensorRT runs it only when allowed.
                runtime.engine_host_code_allowed = True
            blob = plan.read_bytes()
            engine = runtime.deserialize_cuda_engine(blob)
            if engine is None:
                raise ModelFormatError(
                    f"{plan}: TensorRT {getattr(trt, '__version__', '?')} could not deserialize this plan (built by "
                    "another TensorRT version or GPU, corrupt, or a plugin is missing); rebuild it with "
                    "`fcam build-engine` on this machine"
                )
            self._engine: tensorrt.ICudaEngine | None = engine
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self._outputs = [n for n in names if n not in self._inputs]
            if self._inputs != [INPUT_NAME]:
                raise ModelFormatError(
                    f"{plan}: engine inputs are {self._inputs}, expected exactly [{INPUT_NAME!r}]; build it from an "
                    "ONNX written by `fcam export`"
                )
            missing = [n for n in metadata.output_names if n not in self._outputs]
            if missing:
                raise ModelFormatError(
                    f"{plan}: engine lacks output(s) {missing} that its metadata promises (has {self._outputs})"
                )
            context = engine.create_execution_context()
            if context is None:
                raise BackendUnavailableError(f"{plan}: TensorRT could not create an execution context (GPU memory?)")
            self._context: tensorrt.IExecutionContext | None = context

    # --- Runner protocol -----------------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return "tensorrt"

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def device(self) -> str:
        return f"cuda:{self._index}"

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"tensorrt:cuda:{self._index}",)

    @property
    def fell_back_to_cpu(self) -> bool:
        return False

    @property
    def thread_safe(self) -> bool:
        return True

    @property
    def io_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(input names, output names) of the engine, in engine order."""
        return tuple(self._inputs), tuple(self._outputs)

    def run(self, images: np.ndarray) -> GraphOutputs:
        """Run the engine on a preprocessed batch.

        Args:
            images: uint8 (N, H, W, 3) RGB at the model's input size, C-contiguous.

        Returns:
            Host arrays for exactly ``metadata.output_names``.

        Raises:
            InputError: wrong dtype/shape, or a batch outside the engine's optimisation profile.
            RuntimeError: the runner is closed, or TensorRT failed to enqueue.
        """
        batch = check_runner_input(images, self._metadata)
        mem = self._mem
        with self._lock:
            if self._closed:
                raise RuntimeError("this TensorRT runner is closed")
            self._check_profile(batch.shape)
            ctx = self._context
            assert ctx is not None  # set in __init__, cleared only by close()
            with mem.activate():
                x = mem.upload(batch)
                if not ctx.set_input_shape(INPUT_NAME, tuple(int(d) for d in batch.shape)):
                    raise InputError(f"TensorRT rejected input shape {tuple(batch.shape)} for {INPUT_NAME!r}")
                ctx.set_tensor_address(INPUT_NAME, mem.address(x))
                outs: dict[str, Any] = {}
                for name in self._outputs:
                    shape = _dims(ctx.get_tensor_shape(name))
                    if any(d < 0 for d in shape):
                        raise RuntimeError(f"TensorRT left output {name!r} with unresolved shape {shape}")
                    buf = mem.empty(shape, _TRT_TO_TORCH[self._dtype_name(name)])
                    ctx.set_tensor_address(name, mem.address(buf))
                    outs[name] = buf
                if not ctx.execute_async_v3(mem.stream_handle):
                    raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
            try:
                mem.synchronize()
                return {n: mem.download(outs[n]) for n in self._metadata.output_names}
            finally:
                mem.release()

    def close(self) -> None:
        """Release the context, engine and runtime (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._context = None
            self._engine = None
            self._runtime = None
            self._plugin_handles = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers -------------------------------------------------------------------------------------------------

    def _dtype_name(self, name: str) -> str:
        assert self._engine is not None
        dt = self._engine.get_tensor_dtype(name)
        key = str(getattr(dt, "name", dt)).split(".")[-1]
        if key not in _TRT_TO_TORCH:
            raise ModelFormatError(f"engine output {name!r} has TensorRT dtype {key}, which this runner does not map")
        return key

    def _check_profile(self, shape: tuple[int, ...]) -> None:
        assert self._engine is not None
        lo, _, hi = self._engine.get_tensor_profile_shape(INPUT_NAME, 0)
        lo_t, hi_t = _dims(lo), _dims(hi)
        if not all(a <= s <= b for a, s, b in zip(lo_t, shape, hi_t, strict=True)):
            raise InputError(
                f"batch shape {tuple(shape)} is outside the engine's optimisation profile {lo_t}..{hi_t}; rebuild "
                f"with `fcam build-engine --shapes {INPUT_NAME}:MIN/OPT/MAX` or split the batch"
            )


def open_runner(
    path: str | os.PathLike[str],
    *,
    device: str = "cuda:0",
    plugin_library: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> TrtRunner:
    """Open a TensorRT plan and its sidecar ``<plan>.json``.

    Args:
        path: the ``.plan`` written by ``fcam build-engine``.
        device: ``"cuda"`` or ``"cuda:N"``.
        plugin_library: plugin library path(s); see the module docstring for the fallbacks.

    Raises:
        ModelFormatError: not a plan (e.g. an ONNX file), missing/invalid sidecar, or an engine whose I/O does not
            match the fcam graph contract.
        BackendUnavailableError: no tensorrt, no CUDA device, or a missing plugin library.
    """
    from fcam_deploy.runtime.trt_support import read_sidecar, sidecar_path

    plan = Path(path)
    if not plan.is_file():
        raise ModelFormatError(f"{plan}: no such TensorRT plan")
    with plan.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x08") and plan.suffix.lower() == ".onnx":
        raise ModelFormatError(f"{plan}: this is an ONNX file, not a TensorRT plan; use backend='onnxruntime'")
    sidecar = read_sidecar(plan)
    metadata = ModelMetadata.from_json_file(sidecar_path(plan))
    plugins = (
        []
        if sidecar.plugins_serialized and plugin_library is None
        else resolve_plugin_libraries(plugin_library, sidecar.plugins)
    )
    if sidecar.plugins and not sidecar.plugins_serialized and not plugins:
        raise BackendUnavailableError(f"{plan} needs the TensorRT plugin library; set {PLUGINS_ENV}")
    return TrtRunner(plan, metadata, device=device, plugin_paths=plugins, host_code_allowed=sidecar.plugins_serialized)
