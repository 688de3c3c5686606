"""The contract every inference backend satisfies, and the model metadata they all share.

A *runner* executes one exported localization graph on an already preprocessed batch. It knows nothing about
image files, resizing or result types: :class:`fcam_deploy.runtime.Localizer` does that, the same way for every
backend. Backends: ``torch`` (the checkpoint's own modules), ``onnxruntime`` (a ``.onnx`` file) and ``tensorrt``
(a ``.plan`` built by ``fcam build-engine``; implemented in :mod:`fcam_deploy.runtime.tensorrt`).

Graph I/O (fixed names, see :data:`INPUT_NAME` and :data:`OUTPUT_NAMES`):

================ ========== ================== =====================================================================
name             dtype      shape              meaning
================ ========== ================== =====================================================================
``images``       uint8      (N, H, W, 3)       RGB, already resized to the model's input size; normalisation
                                               (``x / 255 - mean) / std``) happens inside the graph
``logits``       float32    (N, K)             class scores
``pred_class``   int64      (N,)               argmax of ``logits``: the class whose map is returned
``map``          float32    (N, H, W)          the method's localization map at input resolution, in [0, 1]
``mask``         uint8      (N, H, W)          ``map >= tau`` as 0/1 (only when the graph has post-processing)
``boxes``        int32      (N, B, 4)          (x0, y0, x1, y1) inclusive, input pixels (``custom-op`` graphs only)
``box_count``    int32      (N,)               number of valid rows of ``boxes`` (``custom-op`` graphs only)
================ ========== ================== =====================================================================

Metadata travels with the model: ONNX ``metadata_props`` (string -> string), and for a TensorRT plan a sidecar JSON
file ``<plan>.json`` holding the same key/value pairs (written by ``fcam build-engine``). :class:`ModelMetadata`
parses and validates both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from fcam_deploy._limits import MAX_INPUT_SIDE, is_finite_number
from fcam_deploy.errors import ModelFormatError

__all__ = [
    "BACKENDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INPUT_LAYOUT",
    "INPUT_NAME",
    "METHODS",
    "OUTPUT_NAMES",
    "POSTPROCESS_MODES",
    "Backend",
    "GraphOutputs",
    "ModelMetadata",
    "PostprocessMode",
    "Runner",
    "check_runner_input",
]

Backend = Literal["torch", "onnxruntime", "tensorrt"]
PostprocessMode = Literal["none", "onnx", "custom-op"]

#: Backends a :class:`Runner` can implement.
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
#: Post-processing modes of an exported graph.
POSTPROCESS_MODES: tuple[str, ...] = ("none", "onnx", "custom-op")
#: Map methods an exported graph can compute (forward-only; the baselines use their closed forms).
METHODS: tuple[str, ...] = ("fcam", "cam", "gradcam", "gradcampp", "xgradcam", "layercam")

#: Name of the graph's single input.
INPUT_NAME = "images"
#: Input layout: uint8 RGB, batch-first, channels-last; normalisation is inside the graph.
INPUT_LAYOUT = "NHWC-uint8-RGB"
#: Every output name a graph may have, in graph order.
OUTPUT_NAMES: tuple[str, ...] = ("logits", "pred_class", "map", "mask", "boxes", "box_count")

#: Value of the ``fcam_deploy.format`` metadata key on every model we write.
FORMAT_NAME = "fcam-deploy-model"
#: Version of the metadata schema below. Readers reject other versions with :class:`ModelFormatError`.
FORMAT_VERSION = 1

#: A runner's result: output name -> host NumPy array (dtypes/shapes as in the module docstring).
GraphOutputs = dict[str, np.ndarray]

_PREFIX = "fcam_deploy."


@dataclass(frozen=True)
class ModelMetadata:
    """What a deployed model says about itself (everything needed to preprocess and interpret outputs).

    Attributes:
        class_names: one name per class, index = label.
        input_size: (H, W) the graph's input resolution.
        mean: per-channel RGB mean in [0, 1] units, applied inside the graph.
        std: per-channel RGB std in [0, 1] units, applied inside the graph.
        tau: mask threshold on the [0, 1] map (validation-optimal from the checkpoint; 0.5 when it had none).
        method: map method, one of :data:`METHODS`.
        postprocess: one of :data:`POSTPROCESS_MODES`.
        max_boxes: rows of the ``boxes`` output (``custom-op`` graphs; 0 otherwise).
        input_layout: always :data:`INPUT_LAYOUT` for this format version.
        resize: how callers must resize images to ``input_size`` (``"bilinear"``: PIL bilinear, straight to H×W).
        arch: backbone name.
        fcam_deploy_version: package version that wrote the model.
        opset: ONNX opset of the graph (0 when not applicable).
        dynamic_batch: whether the batch dimension is symbolic.
        extra: any other ``fcam_deploy.*`` keys, kept verbatim.
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tau: float
    method: str
    postprocess: str
    max_boxes: int = 0
    input_layout: str = INPUT_LAYOUT
    resize: str = "bilinear"
    arch: str = ""
    fcam_deploy_version: str = ""
    opset: int = 0
    dynamic_batch: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Outputs a graph with this metadata has, in order."""
        names = ["logits", "pred_class", "map"]
        if self.postprocess in ("onnx", "custom-op"):
            names.append("mask")
        if self.postprocess == "custom-op":
            names += ["boxes", "box_count"]
        return tuple(names)

    def to_props(self) -> dict[str, str]:
        """Serialise to string key/value pairs (ONNX ``metadata_props``, plan sidecar JSON)."""
        props = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "class_names": json.dumps(list(self.class_names)),
            "input_size": json.dumps(list(self.input_size)),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "tau": repr(float(self.tau)),
            "method": self.method,
            "postprocess": self.postprocess,
            "max_boxes": str(int(self.max_boxes)),
            "input_layout": self.input_layout,
            "resize": self.resize,
            "arch": self.arch,
            "version": self.fcam_deploy_version,
            "opset": str(int(self.opset)),
            "dynamic_batch": "true" if self.dynamic_batch else "false",
        }
        out = {_PREFIX + k: v for k, v in props.items()}
        for k, v in self.extra.items():
            out.setdefault(_PREFIX + k, v)
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str | Path = "<model>") -> ModelMetadata:
        """Parse and validate :meth:`to_props` output.

        Raises:
            ModelFormatError: the keys are missing (not an fcam-deploy model), of another format version, or invalid.
        """
        ours = {k[len(_PREFIX) :]: v for k, v in props.items() if k.startswith(_PREFIX)}
        fix = "export it with `fcam export` from this fcam-deploy version"
        if ours.get("format") != FORMAT_NAME:
            raise ModelFormatError(
                f"{source}: not an fcam-deploy model (metadata key '{_PREFIX}format' is "
                f"{ours.get('format')!r}, expected {FORMAT_NAME!r}); {fix}"
            )
        if ours.get("format_version") != str(FORMAT_VERSION):
            raise ModelFormatError(
                f"{source}: fcam-deploy model format version {ours.get('format_version')!r}, this reader supports "
                f"{FORMAT_VERSION}; {fix}"
            )
        try:
            names = json.loads(ours["class_names"])
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
                raise ValueError(f"class_names must be a JSON list of strings, got {ours['class_names'][:80]!r}")
            class_names = tuple(names)
            size = json.loads(ours["input_size"])
            if (
                not isinstance(size, list)
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            ):
                raise ValueError(f"input_size must be a JSON list of two integers, got {ours['input_size'][:80]!r}")
            h, w = size
            mean = tuple(float(v) for v in json.loads(ours["mean"]))
            std = tuple(float(v) for v in json.loads(ours["std"]))
            meta = cls(
                class_names=class_names,
                input_size=(h, w),
                mean=(mean[0], mean[1], mean[2]),
                std=(std[0], std[1], std[2]),
                tau=float(ours["tau"]),
                method=ours["method"],
                postprocess=ours["postprocess"],
                max_boxes=int(ours.get("max_boxes", "0")),
                input_layout=ours.get("input_layout", INPUT_LAYOUT),
                resize=ours.get("resize", "bilinear"),
                arch=ours.get("arch", ""),
                fcam_deploy_version=ours.get("version", ""),
                opset=int(ours.get("opset", "0")),
                dynamic_batch=ours.get("dynamic_batch", "true") == "true",
                extra={k: v for k, v in ours.items() if k not in _KNOWN_KEYS},
            )
        except (KeyError, ValueError, TypeError, IndexError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{source}: invalid fcam-deploy metadata ({exc!r}); {fix}") from exc
        meta.validate(source)
        return meta

    def validate(self, source: str | Path = "<model>") -> None:
        """Raise :class:`ModelFormatError` if any field is out of range."""
        problems = []
        if not self.class_names:
            problems.append("no class names")
        elif not all(isinstance(c, str) and c for c in self.class_names) or len(set(self.class_names)) != len(
            self.class_names
        ):
            problems.append("class names must be unique non-empty strings")
        if len(self.input_size) != 2 or not all(1 <= v <= MAX_INPUT_SIDE for v in self.input_size):
            problems.append(f"input_size {self.input_size} (each side in [1, {MAX_INPUT_SIDE}])")
        if (
            len(self.mean) != 3
            or len(self.std) != 3
            or not all(is_finite_number(v) for v in (*self.mean, *self.std))
            or min(self.std) <= 0
        ):
            problems.append(f"mean/std {self.mean}/{self.std} (3 finite numbers each, std > 0)")
        if not 0.0 <= self.tau <= 1.0:
            problems.append(f"tau {self.tau} outside [0, 1]")
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} not in {METHODS}")
        if self.postprocess not in POSTPROCESS_MODES:
            problems.append(f"postprocess {self.postprocess!r} not in {POSTPROCESS_MODES}")
        if self.input_layout != INPUT_LAYOUT:
            problems.append(f"input_layout {self.input_layout!r} (this reader supports {INPUT_LAYOUT!r})")
        if problems:
            raise ModelFormatError(f"{source}: invalid fcam-deploy metadata: {'; '.join(problems)}")

    def to_json(self) -> str:
        """The sidecar JSON text (``<plan>.json``) holding :meth:`to_props`."""
        return json.dumps(self.to_props(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: Path) -> ModelMetadata:
        """Read a sidecar written by :meth:`to_json`.

        Raises:
            ModelFormatError: missing, not JSON, or invalid metadata.
        """
        try:
            props = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelFormatError(
                f"{path}: metadata sidecar not found; rebuild the engine with `fcam build-engine`, which writes it"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: unreadable metadata sidecar ({exc})") from exc
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise ModelFormatError(f"{path}: metadata sidecar must be a JSON object of strings")
        return cls.from_props(props, source=path)


_KNOWN_KEYS = frozenset(
    {
        "format",
        "format_version",
        "class_names",
        "input_size",
        "mean",
        "std",
        "tau",
        "method",
        "postprocess",
        "max_boxes",
        "input_layout",
        "resize",
        "arch",
        "version",
        "opset",
        "dynamic_batch",
    }
)


@runtime_checkable
class Runner(Protocol):
    """One loaded model on one backend/device. Implementations: ``TorchRunner``, ``OrtRunner``, ``TrtRunner``.

    Contract:
        - ``run(images)`` takes a C-contiguous uint8 array (N, H, W, 3) with (H, W) == ``metadata.input_size``
          (N >= 1; N > 1 only needs to work when ``metadata.dynamic_batch``) and returns host NumPy arrays for
          exactly ``metadata.output_names`` with the dtypes/shapes of the module table. It never keeps a
          reference to ``images`` or to the returned arrays.
        - ``thread_safe``: True when ``run`` may be called from several threads at once; otherwise the
          :class:`~fcam_deploy.runtime.Localizer` serialises calls with a lock.
        - ``providers``: what actually executes the graph, most preferred first (ORT: ``session.get_providers()``;
          torch: ``("torch:cpu",)``; TensorRT: ``("tensorrt:cuda:0",)``).
        - ``fell_back_to_cpu``: True when a GPU was requested but the graph runs on the CPU.
        - ``close()`` releases native resources; calling ``run`` afterwards raises ``RuntimeError``.
        - Loading errors are typed: :class:`~fcam_deploy.errors.ModelFormatError` (wrong kind/version of file),
          :class:`~fcam_deploy.errors.BackendUnavailableError` (library, plugin or device missing).

    The TensorRT module provides ``open_runner(path: Path, *, device: str = "cuda:0",
    plugin_library: Path | None = None) -> Runner``; metadata comes from the sidecar ``<plan>.json``
    (:meth:`ModelMetadata.from_json_file`).
    """

    @property
    def backend(self) -> str: ...

    @property
    def metadata(self) -> ModelMetadata: ...

    @property
    def device(self) -> str: ...

    @property
    def providers(self) -> tuple[str, ...]: ...

    @property
    def fell_back_to_cpu(self) -> bool: ...

    @property
    def thread_safe(self) -> bool: ...

    def run(self, images: np.ndarray) -> GraphOutputs: ...

    def close(self) -> None: ...


def check_runner_input(images: object, meta: ModelMetadata) -> np.ndarray:
    """Validate a runner input batch; returns it as a C-contiguous uint8 array.

    Raises:
        InputError: not a uint8 (N, H, W, 3) array at the model's input size.
    """
    from fcam_deploy.errors import InputError

    if not isinstance(images, np.ndarray):
        raise InputError(f"runner input must be a numpy array, got {type(images).__name__}")
    h, w = meta.input_size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3) or images.shape[0] < 1:
        raise InputError(
            f"runner input must be uint8 (N, {h}, {w}, 3) with N >= 1, got {images.dtype} {tuple(images.shape)}; "
            "use Localizer.predict for automatic preprocessing"
        )
    if images.shape[0] > 1 and not meta.dynamic_batch:
        raise InputError(f"this model was exported with a fixed batch of 1, got N={images.shape[0]}")
    return np.ascontiguousarray(images)
