"""Build a TensorRT engine (``.plan``) from an exported fcam ONNX graph.

Written against the API subset that TensorRT 10.x and 11.x share (docs/op-contract.md §4):

* the network is **strongly typed** (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TRT 11 ignores the flag
  because strong typing is always on there). No precision builder flags are set: the precision is the one the ONNX
  graph carries (fp32 as exported, fp16 after ModelOpt AutoCast, int8/fp8 through Q/DQ nodes);
* one optimisation profile per build, covering every dynamic input (``--shapes``);
* plugin libraries are loaded by **explicit path** through the plugin registry's ``load_library`` (the dynamic
  ``getCreators`` entry point that ``libfcam_trt_plugins.so`` exports) and may be embedded in the plan with
  ``IBuilderConfig.plugins_to_serialize``;
* an optional timing cache is read before and written back after the build;
* the ONNX ``metadata_props`` (class names, input size, normalisation, tau, method, layout) are copied into a
  sidecar JSON next to the plan (:func:`sidecar_path`), since a plan file cannot carry them.

``tensorrt`` is imported only inside :func:`build_engine`; without it a :class:`BackendUnavailableError` says what
to install. What the runtime also needs (importing the bindings, plugin loading, the sidecar format, the shape
profile type) lives in :mod:`fcam_deploy.runtime.trt_support` and is re-exported here; the probe graph of
``fcam doctor`` in :mod:`fcam_deploy.export.probe`. The TensorRT calls are type-checked against ``tensorrt-stubs``
with ``make typecheck-trt`` (no TensorRT needed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcam_deploy._io import atomic_write_bytes
from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError
from fcam_deploy.export.probe import write_probe_onnx
from fcam_deploy.runtime.trt_support import (
    ENGINE_PREFIX,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    EngineSidecar,
    Shape,
    ShapeProfile,
    TensorInfo,
    check_plugin_paths,
    import_tensorrt,
    load_plugin_libraries,
    read_sidecar,
    sidecar_path,
    tensorrt_unavailable_reason,
    write_sidecar,
)

if TYPE_CHECKING:  # annotations only; typed by tensorrt-stubs under `make typecheck-trt`, Any otherwise
    import tensorrt  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "ENGINE_PREFIX",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "EngineBuildResult",
    "EngineSidecar",
    "OnnxSummary",
    "ShapeProfile",
    "TensorInfo",
    "build_engine",
    "check_plugin_paths",
    "import_tensorrt",
    "load_plugin_libraries",
    "parse_shapes",
    "read_onnx_summary",
    "read_sidecar",
    "resolve_profiles",
    "sidecar_path",
    "tensorrt_unavailable_reason",
    "write_probe_onnx",
    "write_sidecar",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# ONNX side: I/O summary and metadata


@dataclass(frozen=True)
class OnnxSummary:
    """What the engine builder needs to know about an ONNX file.

    Attributes:
        path: the ONNX file.
        sha256: hex digest of its bytes.
        inputs / outputs: graph inputs (initializers excluded) and outputs.
        metadata: the graph's ``metadata_props`` as a ``str -> str`` dict.
        custom_domains: opset domains other than the ONNX defaults (e.g. ``("fcam",)``): they need plugins.
    """

    path: Path
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    custom_domains: tuple[str, ...]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_onnx_summary(path: str | os.PathLike[str]) -> OnnxSummary:
    """Read the I/O signature, metadata and custom domains of an ONNX file (weights are not loaded).

    Raises:
        ModelFormatError: the file is missing or is not an ONNX model.
    """
    import onnx
    from onnx import helper

    p = Path(path)
    if not p.is_file():
        raise ModelFormatError(f"{p}: no such ONNX file (fix: pass the path written by `fcam export`)")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / google.protobuf errors of several kinds
        raise ModelFormatError(
            f"{p}: not an ONNX model ({type(exc).__name__}: {exc}); a TensorRT .plan or a checkpoint cannot be "
            "given here (fix: pass the .onnx written by `fcam export`)"
        ) from exc
    if not model.graph.node and not model.graph.input:
        raise ModelFormatError(f"{p}: the file parsed as ONNX but holds an empty graph (fix: re-export it)")

    init_names = {t.name for t in model.graph.initializer}

    def info(vi: Any) -> TensorInfo:
        tt = vi.type.tensor_type
        dims: list[int] = []
        names: list[str] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
                names.append("")
            else:
                dims.append(-1)
                names.append(d.dim_param)
        try:
            dtype = str(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, ValueError):  # an unknown elem_type code
            dtype = f"onnx:{tt.elem_type}"
        return TensorInfo(vi.name, dtype, tuple(dims), tuple(names))

    inputs = tuple(info(vi) for vi in model.graph.input if vi.name not in init_names)
    outputs = tuple(info(vi) for vi in model.graph.output)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    domains = tuple(sorted({o.domain for o in model.opset_import if o.domain not in ("", "ai.onnx", "ai.onnx.ml")}))
    return OnnxSummary(p, _file_sha256(p), inputs, outputs, metadata, domains)


# --------------------------------------------------------------------------------------------------------------
# Optimisation profiles


_SHAPES_HELP = (
    "use NAME:MIN/OPT/MAX with full shapes NxHxWxC (e.g. images:1x224x224x3/4x224x224x3/8x224x224x3), or batch sizes "
    "only as MIN/OPT/MAX (e.g. 1/4/8) to keep the other dimensions of the ONNX input"
)


def _parse_dims(text: str, spec: str) -> Shape:
    parts = text.strip().lower().split("x")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--shapes {spec!r}: {text!r} is not a list of integers joined by 'x'; {_SHAPES_HELP}"
        ) from None


def parse_shapes(specs: Sequence[str]) -> dict[str | None, tuple[Shape, Shape, Shape]]:
    """Parse ``--shapes`` values into ``{input name or None: (min, opt, max)}``.

    A value is ``NAME:MIN/OPT/MAX`` or ``MIN/OPT/MAX``, where each of MIN/OPT/MAX is ``AxBxCxD`` (a full shape)
    or a single integer (the batch size). ``None`` as the key stands for "the only dynamic input".

    Raises:
        ConfigError: malformed value or a name given twice.
    """
    out: dict[str | None, tuple[Shape, Shape, Shape]] = {}
    for spec in specs:
        name: str | None = None
        body = spec.strip()
        m = re.fullmatch(r"([^:/]+):(.+)", body)
        if m:
            name, body = m.group(1).strip(), m.group(2)
        parts = body.split("/")
        if len(parts) != 3:
            raise ConfigError(f"--shapes {spec!r}: expected three shapes MIN/OPT/MAX, got {len(parts)}; {_SHAPES_HELP}")
        lo, mid, hi = (_parse_dims(p, spec) for p in parts)
        if name in out:
            raise ConfigError(f"--shapes {spec!r}: input {name or '(unnamed)'} given twice")
        out[name] = (lo, mid, hi)
    return out


def resolve_profiles(
    inputs: Sequence[TensorInfo], shapes: Mapping[str | None, tuple[Shape, Shape, Shape]] | None
) -> list[ShapeProfile]:
    """Turn parsed ``--shapes`` into a profile entry for every input with a dynamic dimension.

    Rules: a full shape must match the input's rank and agree with every static dimension; a batch-only value
    (one integer) sets dimension 0 and takes the others from the ONNX (they must then be static). Inputs with a
    dynamic dimension and no ``--shapes`` get batch 1/1/1 when only the batch is dynamic.

    Raises:
        ConfigError: unknown input name, rank mismatch, conflict with a static dimension, or a dynamic
            non-batch dimension with no shape given.
    """
    shapes = dict(shapes or {})
    by_name = {t.name: t for t in inputs}
    if None in shapes:
        dynamic = [t for t in inputs if any(d < 0 for d in t.shape)] or list(inputs)
        if len(dynamic) != 1:
            raise ConfigError(
                f"--shapes without an input name is ambiguous: the graph has inputs {sorted(by_name)}; prefix the "
                "value with NAME:"
            )
        if dynamic[0].name in shapes:
            raise ConfigError(f"--shapes gives input {dynamic[0].name!r} twice (once unnamed)")
        shapes[dynamic[0].name] = shapes.pop(None)
    unknown = sorted(str(k) for k in shapes if k not in by_name)
    if unknown:
        raise ConfigError(f"--shapes names unknown input(s) {unknown}; the graph inputs are {sorted(by_name)}")

    profiles: list[ShapeProfile] = []
    for t in inputs:
        given = shapes.get(t.name)
        if given is None:
            if all(d >= 0 for d in t.shape):
                continue
            if any(d < 0 for d in t.shape[1:]):
                raise ConfigError(
                    f"input {t.name!r} has dynamic dimensions {list(t.shape)} beyond the batch; give --shapes "
                    f"{t.name}:MIN/OPT/MAX with full shapes"
                )
            fixed = (1, *t.shape[1:])
            profiles.append(ShapeProfile(t.name, fixed, fixed, fixed))
            continue
        full: list[Shape] = []
        for s in given:
            if len(s) == 1 and len(t.shape) > 1:
                if any(d < 0 for d in t.shape[1:]):
                    raise ConfigError(
                        f"--shapes for {t.name!r} gives only batch sizes but the input's other dimensions are "
                        f"dynamic ({list(t.shape)}); give full shapes"
                    )
                s = (s[0], *t.shape[1:])
            if len(s) != len(t.shape):
                raise ConfigError(
                    f"--shapes for {t.name!r}: rank {len(s)} ({list(s)}) does not match the input's rank "
                    f"{len(t.shape)} ({list(t.shape)})"
                )
            for i, (want, got) in enumerate(zip(t.shape, s, strict=True)):
                if want >= 0 and want != got:
                    raise ConfigError(
                        f"--shapes for {t.name!r}: dimension {i} is fixed to {want} in the ONNX, got {got}"
                    )
            full.append(s)
        profiles.append(ShapeProfile(t.name, full[0], full[1], full[2]))
    return profiles


# --------------------------------------------------------------------------------------------------------------
# Build


@dataclass(frozen=True)
class EngineBuildResult:
    """What :func:`build_engine` wrote.

    Attributes:
        plan: the serialized engine.
        sidecar: its metadata JSON.
        timing_cache: the timing cache written back, or ``None``.
        seconds: wall time of the TensorRT build.
        tensorrt_version: TensorRT's version string.
    """

    plan: Path
    sidecar: Path
    timing_cache: Path | None
    seconds: float
    tensorrt_version: str


def _make_logger(verbose: bool) -> tensorrt.Logger:
    """TensorRT's stock ``trt.Logger`` at VERBOSE or WARNING severity (after :func:`import_tensorrt`)."""
    import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]

    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def build_engine(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    plugins: Sequence[str | os.PathLike[str]] = (),
    shapes: Mapping[str | None, tuple[Shape, Shape, Shape]] | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    serialize_plugins: bool = False,
    workspace_bytes: int | None = None,
    tf32: bool = True,
    verbose: bool = False,
) -> EngineBuildResult:
    """Build a strongly typed TensorRT engine from ``onnx_path`` and write it to ``out`` plus its sidecar JSON.

    Args:
        onnx_path: ONNX graph from ``fcam export`` (any precision: the engine keeps the graph's types).
        out: plan file to write (atomically). The sidecar goes to :func:`sidecar_path` ``(out)``.
        plugins: plugin libraries (``libfcam_trt_plugins.so``) to load by explicit path before parsing.
        shapes: parsed ``--shapes`` (:func:`parse_shapes`); needed when an input has a dynamic dimension other
            than the batch. Dynamic-batch inputs default to batch 1/1/1.
        timing_cache: timing cache file; read if it exists, written back after the build.
        serialize_plugins: embed ``plugins`` in the plan (``plugins_to_serialize``), so the runtime needs no
            separate library.
        workspace_bytes: cap of the builder's workspace memory pool (``None``: TensorRT's default).
        tf32: leave TensorRT's TF32 tactics on for fp32 convolutions/matmuls (default on, as TensorRT does);
            ``False`` gives fp32-exact math, as ``fcam doctor``'s parity check uses.
        verbose: TensorRT verbose logging.

    Returns:
        :class:`EngineBuildResult`.

    Raises:
        BackendUnavailableError: no tensorrt, no GPU/builder, or a plugin library that cannot be loaded.
        ModelFormatError: the ONNX cannot be read or TensorRT's parser rejects it (its messages are included).
        ConfigError: bad shapes, or a custom-domain graph built without ``plugins``.
    """
    summary = read_onnx_summary(onnx_path)
    profiles = resolve_profiles(summary.inputs, shapes)
    plugin_paths = check_plugin_paths(plugins)
    if summary.custom_domains and not plugin_paths:
        raise ConfigError(
            f"{summary.path} uses custom op domain(s) {list(summary.custom_domains)}: pass the TensorRT plugin "
            "library with --plugins (libfcam_trt_plugins.so from `make kernels`), or export with "
            "--postprocess onnx for a plugin-free graph"
        )
    if serialize_plugins and not plugin_paths:
        raise ConfigError("--serialize-plugins needs at least one --plugins library")
    out_path = Path(out)
    if out_path.suffix.lower() == ".onnx":
        raise ConfigError(f"--out {out_path}: refusing to write a plan over an .onnx name (use .plan or .engine)")

    trt_module = import_tensorrt()  # the typed error when TensorRT is missing or not the real bindings
    import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]  # that module, statically typed

    logger = _make_logger(verbose)
    t0 = time.perf_counter()
    builder = trt.Builder(logger)
    if builder is None:
        raise BackendUnavailableError("TensorRT could not create a builder (no CUDA GPU or driver?); run `fcam doctor`")
    registry = builder.get_plugin_registry()
    handles = load_plugin_libraries(trt_module, registry, plugin_paths)

    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(summary.path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        hint = ""
        if any("Plugin not found" in e for e in errors):
            hint = " (a custom node found no plugin: check --plugins and the plugin name/version/namespace)"
        raise ModelFormatError(f"TensorRT's ONNX parser rejected {summary.path}{hint}: " + "; ".join(errors))

    config = builder.create_builder_config()
    if workspace_bytes is not None:
        if workspace_bytes <= 0:
            raise ConfigError(f"workspace size must be positive, got {workspace_bytes} bytes")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if profiles:
        profile = builder.create_optimization_profile()
        for sp in profiles:
            # pybind11 converts the int tuples to Dims (the stubs declare only Dims)
            profile.set_shape(sp.name, sp.min, sp.opt, sp.max)  # type: ignore[arg-type, unused-ignore]
        config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
    if serialize_plugins:
        config.plugins_to_serialize = [str(p) for p in plugin_paths]

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelFormatError(
            f"TensorRT failed to build an engine from {summary.path}; rerun with --verbose for TensorRT's log"
        )
    seconds = time.perf_counter() - t0
    atomic_write_bytes(out_path, bytes(memoryview(serialized)))

    written_cache: Path | None = None
    if cache_path is not None:
        cache_obj = config.get_timing_cache()
        if cache_obj is not None:
            atomic_write_bytes(cache_path, bytes(memoryview(cache_obj.serialize())))
            written_cache = cache_path

    version = str(getattr(trt, "__version__", "unknown"))
    sidecar = EngineSidecar(
        metadata=summary.metadata,
        inputs=summary.inputs,
        outputs=summary.outputs,
        profiles=tuple(profiles),
        plugins=tuple(str(p) for p in plugin_paths),
        plugins_serialized=bool(serialize_plugins),
        tensorrt_version=version,
        onnx_file=summary.path.name,
        onnx_sha256=summary.sha256,
        extra={
            "build_seconds": round(seconds, 3),
            "timing_cache": str(written_cache) if written_cache else None,
            "tf32": tf32,
            "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    side = write_sidecar(out_path, sidecar)
    del handles  # the registry keeps libraries loaded for the process; handles are not needed past the build
    log.info("built %s from %s in %.1f s (TensorRT %s)", out_path, summary.path, seconds, version)
    return EngineBuildResult(out_path, side, written_cache, seconds, version)
