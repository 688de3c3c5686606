"""Build a TensorRT engine (``.plan``) from an exported fcam ONNX graph.

Written against the API subset that TensorRT 10.x and 11.x share (deploy-stack.md §1):

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
to install. "Available" means TensorRT's Python bindings (a module with ``Builder``, ``Runtime``, ``Logger`` and
``__version__``): a bare ``tensorrt`` namespace package, as a stub-only install (``tensorrt-stubs``) or a broken
wheel leaves behind, is reported as unavailable (:func:`tensorrt_unavailable_reason`). The TensorRT calls are
type-checked against ``tensorrt-stubs`` with ``make typecheck-trt`` (no TensorRT needed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError

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
    "tensorrt_unavailable_reason",
    "write_probe_onnx",
    "parse_shapes",
    "read_onnx_summary",
    "read_sidecar",
    "resolve_profiles",
    "sidecar_path",
    "write_sidecar",
]

log = logging.getLogger(__name__)

#: ``format`` field of the sidecar JSON written next to each plan.
SIDECAR_FORMAT = "fcam-deploy-engine"
#: ``format_version`` of that sidecar.
SIDECAR_VERSION = 1

_INSTALL_HINT = (
    "install TensorRT 10.x or 11.x with its Python bindings (pip install tensorrt-cu12 or tensorrt-cu13 from "
    "NVIDIA's index, or the JetPack packages on Jetson); check with `fcam doctor`"
)

Shape = tuple[int, ...]


#: Attributes every TensorRT 10.x / 11.x Python binding has (a namespace package or stub-only install has none).
_TRT_REQUIRED_ATTRS = ("__version__", "Builder", "Runtime", "Logger")


def import_tensorrt() -> ModuleType:
    """Import and return the ``tensorrt`` module (TensorRT's Python bindings).

    Raises:
        BackendUnavailableError: tensorrt is not installed, its native libraries fail to load, or what imports as
            ``tensorrt`` is not the bindings (e.g. the namespace package a stub-only ``tensorrt-stubs`` install
            leaves: ``importlib.util.find_spec("tensorrt")`` succeeds for it, but it has no ``Builder``).
    """
    try:
        mod = importlib.import_module("tensorrt")
    except ImportError as exc:  # ModuleNotFoundError, or a missing libnvinfer.so.* behind the bindings
        raise BackendUnavailableError(f"TensorRT is not available ({exc}); {_INSTALL_HINT}") from exc
    missing = [a for a in _TRT_REQUIRED_ATTRS if not hasattr(mod, a)]
    if missing:
        where = getattr(mod, "__file__", None) or ", ".join(str(p) for p in getattr(mod, "__path__", [])) or "?"
        raise BackendUnavailableError(
            f"TensorRT is not available: the importable 'tensorrt' ({where}) is not TensorRT's Python bindings (it "
            f"lacks {', '.join(missing)}; a namespace package such as a stub-only 'tensorrt-stubs' install leaves); "
            f"{_INSTALL_HINT}"
        )
    return mod


def tensorrt_unavailable_reason() -> str | None:
    """``None`` when :func:`import_tensorrt` succeeds, else why not (for skip reasons and reports; never raises)."""
    try:
        import_tensorrt()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------------------------
# ONNX side: I/O summary and metadata


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    Attributes:
        name: tensor name.
        dtype: numpy-style dtype name (``"float32"``, ``"uint8"``, ...).
        shape: dimensions; a dynamic dimension is ``-1`` (its symbolic name, if any, is in ``dim_names``).
        dim_names: symbolic names of the dimensions (``""`` for static ones).
    """

    name: str
    dtype: str
    shape: Shape
    dim_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "dim_names": list(self.dim_names)}


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
        except Exception:  # an unknown elem_type code
            dtype = f"onnx:{tt.elem_type}"
        return TensorInfo(vi.name, dtype, tuple(dims), tuple(names))

    inputs = tuple(info(vi) for vi in model.graph.input if vi.name not in init_names)
    outputs = tuple(info(vi) for vi in model.graph.output)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    domains = tuple(sorted({o.domain for o in model.opset_import if o.domain not in ("", "ai.onnx", "ai.onnx.ml")}))
    return OnnxSummary(p, _file_sha256(p), inputs, outputs, metadata, domains)


# --------------------------------------------------------------------------------------------------------------
# Optimisation profiles


@dataclass(frozen=True)
class ShapeProfile:
    """Min / opt / max shape of one engine input (one TensorRT optimisation profile entry).

    Invariants (checked in ``__post_init__``): same rank, every dimension >= 1 and ``min <= opt <= max``.
    """

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ConfigError(
                f"shape profile for {self.name!r}: min/opt/max have different ranks "
                f"({list(self.min)}, {list(self.opt)}, {list(self.max)})"
            )
        for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True):
            if lo < 1 or mid < 1 or hi < 1:
                raise ConfigError(f"shape profile for {self.name!r}: dimensions must be >= 1, got {self.describe()}")
            if not lo <= mid <= hi:
                raise ConfigError(
                    f"shape profile for {self.name!r}: need min <= opt <= max in every dimension, got {self.describe()}"
                )

    def describe(self) -> str:
        return "/".join("x".join(str(d) for d in s) for s in (self.min, self.opt, self.max))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


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
# Sidecar metadata


def sidecar_path(plan: str | os.PathLike[str]) -> Path:
    """The sidecar JSON of a plan: ``model.plan`` -> ``model.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


#: Prefix of the build facts this module adds to the sidecar (kept apart from the model's ``fcam_deploy.*`` keys).
ENGINE_PREFIX = "fcam_deploy_engine."


@dataclass(frozen=True)
class EngineSidecar:
    """Contents of the sidecar JSON written next to a plan.

    On disk the sidecar is one flat JSON object of strings (the contract of
    :meth:`fcam_deploy.runtime.base.ModelMetadata.from_json_file`): the ONNX ``metadata_props`` verbatim, plus build
    facts under keys starting with :data:`ENGINE_PREFIX`, whose values are JSON-encoded.

    Attributes:
        metadata: the ONNX ``metadata_props`` verbatim (class names, input size, normalisation, tau, method, ...).
        inputs / outputs: the ONNX I/O signature.
        profiles: the optimisation profile the engine was built with.
        plugins: plugin libraries loaded at build time (absolute paths).
        plugins_serialized: whether those libraries are embedded in the plan.
        tensorrt_version: version of the TensorRT that built the plan (plans only load in that version unless
            built version-compatible).
        onnx_file / onnx_sha256: the source graph.
        extra: free-form build facts (timing cache used, build seconds, ...).
    """

    metadata: dict[str, str]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    profiles: tuple[ShapeProfile, ...]
    plugins: tuple[str, ...]
    plugins_serialized: bool
    tensorrt_version: str
    onnx_file: str
    onnx_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """The flat string -> string mapping written to disk."""
        props = {k: v for k, v in self.metadata.items() if not k.startswith(ENGINE_PREFIX)}
        facts: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "tensorrt_version": self.tensorrt_version,
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "profiles": [p.to_json() for p in self.profiles],
            "plugins": list(self.plugins),
            "plugins_serialized": self.plugins_serialized,
            "extra": dict(self.extra),
        }
        props.update({ENGINE_PREFIX + k: json.dumps(v, sort_keys=True) for k, v in facts.items()})
        return props


def write_sidecar(plan: str | os.PathLike[str], sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` next to ``plan`` atomically; returns the sidecar's path."""
    path = sidecar_path(plan)
    _atomic_write(path, (json.dumps(sidecar.to_props(), indent=2, sort_keys=True) + "\n").encode())
    return path


def read_sidecar(plan: str | os.PathLike[str]) -> EngineSidecar:
    """Read the sidecar JSON of ``plan``.

    Raises:
        ModelFormatError: the sidecar is missing, not JSON, or of another format / version.
    """
    path = sidecar_path(plan)
    if not path.is_file():
        raise ModelFormatError(
            f"{path}: missing; a plan needs the sidecar that `fcam build-engine` writes beside it (fix: rebuild "
            f"the engine with `fcam build-engine MODEL.onnx --out {Path(plan).name}`)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ModelFormatError(f"{path}: an engine sidecar must be a JSON object of strings")
    try:
        facts = {k[len(ENGINE_PREFIX) :]: json.loads(v) for k, v in raw.items() if k.startswith(ENGINE_PREFIX)}
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: malformed {ENGINE_PREFIX}* value ({exc})") from exc
    if facts.get("format") != SIDECAR_FORMAT:
        raise ModelFormatError(
            f"{path}: not an fcam-deploy engine sidecar ({ENGINE_PREFIX}format must be {SIDECAR_FORMAT!r}); "
            "rebuild the engine with `fcam build-engine`"
        )
    if facts.get("format_version") != SIDECAR_VERSION:
        raise ModelFormatError(
            f"{path}: sidecar format_version {facts.get('format_version')!r} is not supported (expected "
            f"{SIDECAR_VERSION}); rebuild the engine with this fcam-deploy"
        )
    try:

        def tinfo(d: Mapping[str, Any]) -> TensorInfo:
            return TensorInfo(
                str(d["name"]),
                str(d["dtype"]),
                tuple(int(x) for x in d["shape"]),
                tuple(str(x) for x in d.get("dim_names", ())),
            )

        return EngineSidecar(
            metadata={k: v for k, v in raw.items() if not k.startswith(ENGINE_PREFIX)},
            inputs=tuple(tinfo(d) for d in facts["inputs"]),
            outputs=tuple(tinfo(d) for d in facts["outputs"]),
            profiles=tuple(
                ShapeProfile(str(d["name"]), tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))
                for d in facts["profiles"]
            ),
            plugins=tuple(str(x) for x in facts["plugins"]),
            plugins_serialized=bool(facts["plugins_serialized"]),
            tensorrt_version=str(facts["tensorrt_version"]),
            onnx_file=str(facts["onnx_file"]),
            onnx_sha256=str(facts["onnx_sha256"]),
            extra=dict(facts.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise ModelFormatError(f"{path}: malformed sidecar ({type(exc).__name__}: {exc})") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------------------
# Plugins


def check_plugin_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Validate explicit plugin-library paths (absolute, existing files); never searches anywhere.

    Raises:
        BackendUnavailableError: a path does not exist or is not a file.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser().resolve()
        if not path.is_file():
            raise BackendUnavailableError(
                f"TensorRT plugin library {path} does not exist (fix: build it with `make kernels` and pass its "
                "path with --plugins, or set FCAM_TRT_PLUGINS)"
            )
        out.append(path)
    return out


def load_plugin_libraries(trt: ModuleType, registry: tensorrt.IPluginRegistry, paths: Sequence[Path]) -> list[Any]:
    """Load each plugin library into ``registry`` with ``load_library``; returns the library handles.

    ``trt`` is the module from :func:`import_tensorrt` (kept for callers; the registry is all that is used).

    Raises:
        BackendUnavailableError: TensorRT refused a library.
    """
    handles = []
    for path in paths:
        try:
            handle = registry.load_library(str(path))
        except Exception as exc:  # pybind raises RuntimeError / TypeError on failure, depending on the version
            raise BackendUnavailableError(f"TensorRT could not load plugin library {path}: {exc}") from exc
        if handle is None:
            raise BackendUnavailableError(
                f"TensorRT could not load plugin library {path} (load_library returned None; see the TensorRT "
                "log above: the library must export getCreators/setLoggerFinder and match this TensorRT)"
            )
        handles.append(handle)
    return handles


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
    _atomic_write(out_path, bytes(memoryview(serialized)))

    written_cache: Path | None = None
    if cache_path is not None:
        cache_obj = config.get_timing_cache()
        if cache_obj is not None:
            _atomic_write(cache_path, bytes(memoryview(cache_obj.serialize())))
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


# --------------------------------------------------------------------------------------------------------------
# Probe graph (used by `fcam doctor` and the tests)


def write_probe_onnx(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (32, 32),
    num_classes: int = 3,
    channels: int = 8,
    tau: float = 0.5,
    seed: int = 0,
    opset: int = 18,
) -> Path:
    """Write a small random-weight graph with the fcam I/O contract, built with ``onnx.helper`` only.

    Input ``images`` uint8 (N, H, W, 3) with a dynamic batch; normalisation inside; a 3x3 conv + ReLU feature map
    A (C channels); ``logits`` = linear head on GAP(A); ``pred_class`` = argmax; ``map`` = the CAM of the predicted
    class (sum_k W[c, k] A_k), min-max normalised per image to [0, 1]; ``mask`` = ``map >= tau`` as uint8. The
    metadata is a valid :class:`~fcam_deploy.runtime.base.ModelMetadata` (method ``cam``, post-process ``onnx``), so
    every runtime and ``fcam build-engine`` accept it. Standard ONNX ops only (TensorRT and ORT run it natively).

    Returns:
        ``Path(path)``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fcam_deploy import __version__
    from fcam_deploy.runtime.base import ModelMetadata

    rng = np.random.default_rng(seed)
    h, w = size
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    conv_w = rng.normal(0.0, 0.5, (channels, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0.0, 0.1, (channels,)).astype(np.float32)
    head_w = rng.normal(0.0, 1.0, (num_classes, channels)).astype(np.float32)
    head_b = rng.normal(0.0, 0.1, (num_classes,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(conv_w, "conv_w"),
        numpy_helper.from_array(conv_b, "conv_b"),
        numpy_helper.from_array(head_w.T.copy(), "head_wt"),
        numpy_helper.from_array(head_b, "head_b"),
        numpy_helper.from_array(head_w, "head_w"),
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1) * 255.0, "mean255"),
        numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1) * 255.0, "std255"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
        numpy_helper.from_array(np.array(tau, np.float32), "tau"),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        n("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        n("Sub", ["x_nchw", "mean255"], ["x_c"]),
        n("Div", ["x_c", "std255"], ["x_n"]),
        n("Conv", ["x_n", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Relu", ["conv"], ["feat"]),
        n("ReduceMean", ["feat", "hw_axes"], ["gap4"], keepdims=0),
        n("MatMul", ["gap4", "head_wt"], ["lin"]),
        n("Add", ["lin", "head_b"], ["logits"]),
        n("ArgMax", ["logits"], ["pred_class"], axis=1, keepdims=0),
        n("Gather", ["head_w", "pred_class"], ["w_sel"], axis=0),  # (N, C)
        n("Unsqueeze", ["w_sel", "hw_axes"], ["w_sel4"]),  # (N, C, 1, 1)
        n("Mul", ["feat", "w_sel4"], ["weighted"]),
        n("ReduceSum", ["weighted", "ax1"], ["cam"], keepdims=0),  # (N, H, W)
        n("ReduceMin", ["cam", "ax12"], ["cmin"], keepdims=1),
        n("ReduceMax", ["cam", "ax12"], ["cmax"], keepdims=1),
        n("Sub", ["cam", "cmin"], ["num"]),
        n("Sub", ["cmax", "cmin"], ["rng"]),
        n("Max", ["rng", "eps"], ["den"]),
        n("Div", ["num", "den"], ["map"]),
        n("GreaterOrEqual", ["map", "tau"], ["mask_b"]),
        n("Cast", ["mask_b"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "fcam_probe",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", h, w, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes]),
            helper.make_tensor_value_info("pred_class", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", h, w]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", h, w]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fcam-deploy")
    model.ir_version = 8
    meta = ModelMetadata(
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
        input_size=(h, w),
        mean=mean,
        std=std,
        tau=tau,
        method="cam",
        postprocess="onnx",
        arch="probe",
        fcam_deploy_version=__version__,
        opset=opset,
        dynamic_batch=True,
    )
    onnx.helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model, full_check=True)
    out = Path(path)
    _atomic_write(out, model.SerializeToString())
    return out
