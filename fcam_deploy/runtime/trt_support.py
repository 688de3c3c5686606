"""What the TensorRT runtime needs, and nothing of the engine builder: importing TensorRT's Python bindings, loading
plugin libraries by explicit path, and the sidecar JSON that travels next to a plan (the model's metadata plus the
build facts). :mod:`fcam_deploy.export.tensorrt` builds engines and writes sidecars with these same types.

"Available" means TensorRT's Python bindings (a module with ``Builder``, ``Runtime``, ``Logger`` and
``__version__``): a bare ``tensorrt`` namespace package, as a stub-only install (``tensorrt-stubs``) or a broken
wheel leaves behind, is reported as unavailable (:func:`tensorrt_unavailable_reason`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fcam_deploy._io import atomic_write_text
from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError

if TYPE_CHECKING:  # annotations only; typed by tensorrt-stubs under `make typecheck-trt`, Any otherwise
    import tensorrt  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "ENGINE_PREFIX",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "EngineSidecar",
    "Shape",
    "ShapeProfile",
    "TensorInfo",
    "check_plugin_paths",
    "import_tensorrt",
    "load_plugin_libraries",
    "read_sidecar",
    "sidecar_path",
    "tensorrt_unavailable_reason",
    "write_sidecar",
]

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
    atomic_write_text(path, json.dumps(sidecar.to_props(), indent=2, sort_keys=True) + "\n")
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
