"""A Triton Inference Server model repository for an exported model (``fcam export --triton-repo DIR``).

Layout written (Triton's standard repository)::

    DIR/<name>/config.pbtxt      the model configuration (text protobuf, Triton's ModelConfig)
    DIR/<name>/labels.txt        class names, one a line (``label_filename`` of the ``logits`` output)
    DIR/<name>/<version>/model.onnx   or   model.plan

``config.pbtxt`` comes from the graph itself: platform ``onnxruntime_onnx`` (an ``.onnx`` from ``fcam export``) or
``tensorrt_plan`` (a ``.plan`` from ``fcam build-engine``, whose sidecar JSON holds the I/O signature and the
optimisation profile); inputs and outputs with their names, Triton data types and dims (the batch dimension left
out when the graph's batch is dynamic, ``max_batch_size`` then > 0); ``dynamic_batching`` (preferred sizes, queue
delay); ``instance_group`` (count, CPU or GPU); the model's ``fcam_deploy.*`` metadata as ``parameters``. Outputs
that are one value per image (``pred_class``, ``box_count``) get ``dims: [1]`` with ``reshape { shape: [] }``, the
Triton form for a tensor that is only the batch dimension.

Validation (:func:`validate_repo`) parses the written file with Triton's own ``ModelConfig`` protobuf as the
``tritonclient`` package ships it (``tritonclient.grpc.model_config_pb2``: an unknown field or a wrong type is a
parse error), then checks it against the graph: the same tensor names, types and dims, ``max_batch_size`` within
what the graph (or the engine profile) allows, preferred batch sizes within it, the model file at
``<version>/<default_model_filename>``, and the repository rules Triton applies when it loads a model (name equals
the folder, numeric version folder, non-empty dims).

Graphs exported with ``--postprocess custom-op`` hold the ``fcam::CamPostprocess`` node: on ONNX Runtime they need
the custom-op library, named for Triton in ``model_operations { op_library_filename }`` (a path as the server sees
it); a TensorRT plan needs the plugin library loaded by the server (``--backend-config=tensorrt,plugins=...`` or
``LD_PRELOAD``). :func:`serve_command` gives the ``tritonserver`` command for a repository.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcam_deploy._io import atomic_write_text
from fcam_deploy.errors import ConfigError, MissingExtraError, ModelFormatError

__all__ = [
    "INSTANCE_KINDS",
    "GraphSignature",
    "TritonOptions",
    "TritonRepo",
    "graph_signature",
    "render_config",
    "serve_command",
    "validate_repo",
    "write_triton_repo",
]

#: ``instance_group.kind`` values this writer emits.
INSTANCE_KINDS: tuple[str, ...] = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")

#: numpy dtype name -> Triton ``DataType`` name.
_TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}
_PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _pb() -> tuple[Any, Any]:
    """``(model_config_pb2, text_format)`` from the ``tritonclient`` package."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingExtraError("scale", ["tritonclient"], "a Triton model repository (--triton-repo)") from exc
    return model_config_pb2, text_format


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: ``shape`` includes the batch dimension; ``-1`` is dynamic."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphSignature:
    """What a Triton configuration must agree with.

    Attributes:
        kind: ``"onnx"`` or ``"plan"``.
        path: the model file.
        inputs, outputs: tensors in graph order.
        dynamic_batch: the batch dimension of every tensor is dynamic.
        batch_limit: the largest batch the model accepts (a plan's profile maximum), or ``None`` (any).
        metadata: the model's ``fcam_deploy.*`` key/value metadata.
        custom_domains: ONNX opset domains beyond the standard ones (``("fcam",)`` for custom-op graphs).
        plugins: plugin libraries a plan was built with; ``plugins_serialized`` whether the plan embeds them.
    """

    kind: str
    path: Path
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    dynamic_batch: bool
    batch_limit: int | None
    metadata: dict[str, str]
    custom_domains: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    plugins_serialized: bool = False

    @property
    def class_names(self) -> list[str]:
        raw = self.metadata.get("fcam_deploy.class_names")
        if raw is None:
            return []
        try:
            return [str(c) for c in json.loads(raw)]
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelFormatError(f"{self.path}: fcam_deploy.class_names is not a JSON list ({exc})") from exc


def graph_signature(model: str | Path) -> GraphSignature:
    """Read the I/O signature of an ``.onnx`` (the graph) or a ``.plan`` (its sidecar JSON).

    Raises:
        ModelFormatError: another kind of file, not readable, or not an fcam-deploy model.
    """
    from fcam_deploy.export.tensorrt import read_onnx_summary, read_sidecar

    p = Path(model)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        s = read_onnx_summary(p)
        ins, outs, meta, domains = s.inputs, s.outputs, s.metadata, s.custom_domains
        kind, limit, serialized = "onnx", None, False
        plugins: tuple[str, ...] = ()
    elif suffix in (".plan", ".engine", ".trt"):
        if not p.is_file():
            raise ModelFormatError(f"{p}: no such TensorRT plan (fix: pass the path written by `fcam build-engine`)")
        side = read_sidecar(p)
        ins, outs, meta, domains = side.inputs, side.outputs, side.metadata, ()
        kind, plugins, serialized = "plan", side.plugins, side.plugins_serialized
        limit = min((prof.max[0] for prof in side.profiles if prof.max), default=None)
    else:
        raise ModelFormatError(
            f"{p}: a Triton repository is made from an .onnx written by `fcam export` or a .plan written by "
            "`fcam build-engine`"
        )
    if not any(k.startswith("fcam_deploy.") for k in meta):
        raise ModelFormatError(f"{p}: no fcam_deploy.* metadata; not a model written by fcam export")
    inputs = tuple(Tensor(t.name, t.dtype, tuple(t.shape)) for t in ins)
    outputs = tuple(Tensor(t.name, t.dtype, tuple(t.shape)) for t in outs)
    tensors = inputs + outputs
    dynamic = bool(tensors) and all(len(t.shape) >= 1 and t.shape[0] == -1 for t in tensors)
    return GraphSignature(
        kind, p, inputs, outputs, dynamic, limit, dict(meta), tuple(domains), tuple(plugins), serialized
    )


@dataclass(frozen=True)
class TritonOptions:
    """Choices for the repository (``fcam export --triton-*`` options).

    Attributes:
        name: model name (= its folder); default: the model file's stem.
        version: version folder (>= 1).
        max_batch_size: largest batch Triton forms; default 8 (capped by a plan's profile); 0 for a fixed-batch
            graph.
        preferred_batch_sizes: batch sizes the dynamic batcher aims for; default the powers of two up to the max.
        max_queue_delay_us: how long the dynamic batcher waits to fill a batch (microseconds).
        instance_count: model instances per device (or on the CPU).
        instance_kind: ``KIND_CPU``, ``KIND_GPU`` or ``KIND_AUTO``; default CPU for ONNX, GPU for a plan.
        gpus: GPU indices for ``KIND_GPU`` (default: all).
        ort_ops_library: for an ONNX graph with the ``fcam::CamPostprocess`` node: the path of
            ``libfcam_ort_ops.so`` as the Triton server sees it (``model_operations.op_library_filename``).
        copy_model: copy the model file (default); ``False`` hard-links it when possible.
    """

    name: str | None = None
    version: int = 1
    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = 2000
    instance_count: int = 1
    instance_kind: str | None = None
    gpus: tuple[int, ...] = ()
    ort_ops_library: str | None = None
    copy_model: bool = True
    extra_notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.name is not None and not _NAME_RE.match(self.name):
            raise ConfigError(f"Triton model name {self.name!r}: use letters, digits, '_', '-' and '.' only")
        if self.version < 1:
            raise ConfigError(f"Triton model version must be >= 1; got {self.version}")
        if self.max_batch_size is not None and self.max_batch_size < 0:
            raise ConfigError(f"max_batch_size must be >= 0; got {self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.instance_count < 1:
            raise ConfigError("max_queue_delay_us must be >= 0 and instance_count >= 1")
        if self.instance_kind is not None and self.instance_kind not in INSTANCE_KINDS:
            raise ConfigError(f"instance kind {self.instance_kind!r} not in {INSTANCE_KINDS}")
        if self.preferred_batch_sizes is not None and any(b < 1 for b in self.preferred_batch_sizes):
            raise ConfigError(f"preferred batch sizes must be >= 1; got {list(self.preferred_batch_sizes)}")


def _dims(shape: tuple[int, ...], batched: bool) -> tuple[list[int], bool]:
    """Triton ``dims`` for a graph shape, and whether it needs ``reshape { shape: [] }``."""
    dims = list(shape[1:]) if batched else list(shape)
    if not dims:  # only the batch dimension: Triton wants dims [1] and a reshape to a scalar per item
        return [1], True
    return dims, False


def _triton_type(t: Tensor, path: Path) -> str:
    if t.dtype not in _TRITON_TYPES:
        raise ModelFormatError(f"{path}: tensor {t.name!r} has type {t.dtype}, which Triton has no type for")
    return _TRITON_TYPES[t.dtype]


def _resolve(sig: GraphSignature, opt: TritonOptions) -> tuple[int, list[int], str]:
    """``(max_batch_size, preferred sizes, instance kind)`` for this graph and these options."""
    if not sig.dynamic_batch:
        if opt.max_batch_size:
            raise ConfigError(
                f"{sig.path}: the graph has a fixed batch dimension, so Triton cannot batch it (max_batch_size must "
                "be 0); fix: re-export with --dynamic-batch, or drop --triton-max-batch"
            )
        mbs = 0
    else:
        mbs = 8 if opt.max_batch_size is None else opt.max_batch_size
        if sig.batch_limit is not None:
            if opt.max_batch_size is not None and opt.max_batch_size > sig.batch_limit:
                raise ConfigError(
                    f"{sig.path}: --triton-max-batch {opt.max_batch_size} exceeds the engine profile's largest batch "
                    f"{sig.batch_limit}; fix: a smaller max batch, or rebuild the engine with --shapes 1/N/{opt.max_batch_size}"
                )
            mbs = min(mbs, sig.batch_limit)
    if opt.preferred_batch_sizes is not None:
        preferred = sorted(set(opt.preferred_batch_sizes))
        if mbs and preferred and preferred[-1] > mbs:
            raise ConfigError(f"preferred batch sizes {preferred} exceed max_batch_size {mbs}")
    else:
        preferred = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if 1 < b <= mbs]
    kind = opt.instance_kind or ("KIND_GPU" if sig.kind == "plan" else "KIND_CPU")
    if sig.kind == "plan" and kind == "KIND_CPU":
        raise ConfigError("a TensorRT plan runs on a GPU; use --triton-instance-kind KIND_GPU (or KIND_AUTO)")
    return mbs, preferred, kind


def render_config(sig: GraphSignature, opt: TritonOptions, name: str) -> str:
    """The ``config.pbtxt`` text for ``sig`` (a Triton ``ModelConfig`` message in protobuf text format).

    Raises:
        ConfigError: options that contradict the graph.
        ModelFormatError: a tensor type Triton does not have.
        MissingExtraError: tritonclient (the scale extra) is not installed.
    """
    mc, text_format = _pb()
    mbs, preferred, kind = _resolve(sig, opt)
    platform, filename = _PLATFORMS[sig.kind]
    cfg = mc.ModelConfig(name=name, platform=platform, max_batch_size=mbs, default_model_filename=filename)
    cfg.version_policy.specific.versions.append(opt.version)
    for t in sig.inputs:
        dims, reshape = _dims(t.shape, mbs > 0)
        item = cfg.input.add(name=t.name, data_type=mc.DataType.Value(_triton_type(t, sig.path)), dims=dims)
        if reshape:
            item.reshape.SetInParent()
    for t in sig.outputs:
        dims, reshape = _dims(t.shape, mbs > 0)
        item = cfg.output.add(name=t.name, data_type=mc.DataType.Value(_triton_type(t, sig.path)), dims=dims)
        if reshape:
            item.reshape.SetInParent()
        if t.name == "logits" and sig.class_names:
            item.label_filename = "labels.txt"
    if mbs > 0:
        cfg.dynamic_batching.preferred_batch_size.extend(preferred)
        cfg.dynamic_batching.max_queue_delay_microseconds = opt.max_queue_delay_us
    group = cfg.instance_group.add(count=opt.instance_count, kind=mc.ModelInstanceGroup.Kind.Value(kind))
    if kind == "KIND_GPU" and opt.gpus:
        group.gpus.extend(opt.gpus)
    if "fcam" in sig.custom_domains and sig.kind == "onnx":
        if not opt.ort_ops_library:
            raise ConfigError(
                f"{sig.path} holds the fcam::CamPostprocess node (exported with --postprocess custom-op); Triton's "
                "ONNX Runtime backend needs libfcam_ort_ops.so for it. fix: --triton-ort-ops PATH (the library's "
                "path as the Triton server sees it), or export with --postprocess onnx (standard ops only)"
            )
        cfg.model_operations.op_library_filename.append(opt.ort_ops_library)
    for key, value in sorted(sig.metadata.items()):
        if key.startswith("fcam_deploy"):
            cfg.parameters[key].string_value = value
    header = (
        f"# Triton model configuration written by fcam-deploy from {sig.path.name} ({sig.kind}).\n"
        "# Inputs/outputs, types and dims come from the graph; validated with tritonclient's ModelConfig protobuf.\n"
    )
    return header + text_format.MessageToString(cfg)


@dataclass(frozen=True)
class TritonRepo:
    """A written repository.

    Attributes:
        root: the repository folder (what ``--model-repository`` takes).
        name: the model's name (its folder).
        config_path: ``root/name/config.pbtxt``.
        model_path: the model file inside the version folder.
        config: the parsed ``ModelConfig`` message.
        notes: what the server needs beyond the repository (plugin libraries).
    """

    root: Path
    name: str
    config_path: Path
    model_path: Path
    config: Any
    notes: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "repository": str(self.root),
            "model": self.name,
            "platform": cfg.platform,
            "config": str(self.config_path),
            "model_file": str(self.model_path),
            "max_batch_size": cfg.max_batch_size,
            "inputs": [i.name for i in cfg.input],
            "outputs": [o.name for o in cfg.output],
            "serve": serve_command(self),
            "notes": list(self.notes),
        }


def serve_command(repo: TritonRepo) -> str:
    """The command that serves the repository with Triton's container (the plugin library mounted when needed)."""
    mc, _ = _pb()
    root = repo.root.resolve()
    mounts = f"-v {root}:/models"
    backend = ""
    plugins = [n for n in repo.notes if n.startswith("plugin:")]
    if plugins:
        lib = Path(plugins[0].split(":", 1)[1])
        mounts += f" -v {lib.parent}:/plugins"
        backend = f' --backend-config=tensorrt,plugins="/plugins/{lib.name}"'
    cpu_only = all(g.kind == mc.ModelInstanceGroup.Kind.Value("KIND_CPU") for g in repo.config.instance_group)
    gpus = "" if cpu_only else "--gpus all "
    return (
        f"docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 {mounts} "
        f"nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models{backend}"
    )


def _place_model(src: Path, dest: Path, copy: bool) -> None:
    from fcam_deploy._io import atomic_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        dest.unlink(missing_ok=True)
        try:
            dest.hardlink_to(src)
            return
        except OSError:
            pass
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def write_triton_repo(model: str | Path, repo: str | Path, options: TritonOptions | None = None) -> TritonRepo:
    """Write ``repo/<name>/`` for ``model`` (an ``.onnx`` or a ``.plan``) and validate it (:func:`validate_repo`).

    An existing ``repo/<name>/config.pbtxt`` and model file are replaced; other models in ``repo`` are left alone.

    Raises:
        ModelFormatError: the model is not an fcam-deploy ``.onnx`` / ``.plan``.
        ConfigError: options that contradict the graph.
        MissingExtraError: tritonclient (the scale extra) is not installed.
    """
    opt = options or TritonOptions()
    sig = graph_signature(model)
    name = opt.name or re.sub(r"[^A-Za-z0-9_.-]", "_", sig.path.stem)
    text = render_config(sig, opt, name)
    root = Path(repo)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder; --triton-repo takes a folder")
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _, filename = _PLATFORMS[sig.kind]
    _place_model(sig.path, model_dir / str(opt.version) / filename, opt.copy_model)
    if sig.class_names:
        atomic_write_text(model_dir / "labels.txt", "".join(f"{c}\n" for c in sig.class_names))
    atomic_write_text(model_dir / "config.pbtxt", text)
    notes: list[str] = []
    if sig.kind == "plan" and sig.metadata.get("fcam_deploy.postprocess") == "custom-op":
        for lib in sig.plugins:
            notes.append(f"plugin:{lib}")
        if sig.plugins_serialized:
            notes.append(
                "the plan embeds its plugin code, which TensorRT runs only where the runtime allows engine host "
                "code; loading the plugin library (plugins= or LD_PRELOAD) works either way"
            )
        elif not sig.plugins:
            notes.append("the plan needs the fcam TensorRT plugin library (libfcam_trt_plugins.so) on the server")
    if sig.kind == "onnx" and opt.ort_ops_library:
        notes.append(f"the server must find the ONNX Runtime custom-op library at {opt.ort_ops_library}")
    config = validate_repo(root, name, sig)
    return TritonRepo(
        root,
        name,
        model_dir / "config.pbtxt",
        model_dir / str(opt.version) / filename,
        config,
        tuple(notes) + tuple(opt.extra_notes),
    )


def _problem(path: Path, text: str) -> ModelFormatError:
    return ModelFormatError(f"{path}: {text}")


def validate_repo(repo: str | Path, name: str, sig: GraphSignature | None = None) -> Any:
    """Parse ``repo/<name>/config.pbtxt`` with Triton's ``ModelConfig`` protobuf and check it against the graph
    (``sig``, or the signature of the model file the config names). Returns the parsed message.

    Raises:
        ModelFormatError: the file does not parse, or disagrees with the graph or Triton's repository rules.
        MissingExtraError: tritonclient (the scale extra) is not installed.
    """
    mc, text_format = _pb()
    model_dir = Path(repo) / name
    cfg_path = model_dir / "config.pbtxt"
    if not cfg_path.is_file():
        raise _problem(cfg_path, "missing")
    cfg = mc.ModelConfig()
    try:
        text_format.Parse(cfg_path.read_text(encoding="utf-8"), cfg)
    except text_format.ParseError as exc:
        raise _problem(cfg_path, f"not a valid Triton ModelConfig ({exc})") from exc
    if cfg.name != name:
        raise _problem(cfg_path, f"name {cfg.name!r} differs from its folder {name!r} (Triton refuses to load it)")
    kinds = {v[0]: k for k, v in _PLATFORMS.items()}
    if cfg.platform not in kinds:
        raise _problem(cfg_path, f"platform {cfg.platform!r} is not one this writer emits ({sorted(kinds)})")
    versions = list(cfg.version_policy.specific.versions) or [
        int(d.name) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()
    ]
    if not versions:
        raise _problem(model_dir, "no numeric version folder")
    filename = cfg.default_model_filename or _PLATFORMS[kinds[cfg.platform]][1]
    for v in versions:
        if not (model_dir / str(v) / filename).is_file():
            raise _problem(model_dir, f"version {v} has no {filename}")
    model_file = model_dir / str(versions[0]) / filename
    if sig is None:
        sig = graph_signature(model_file)
    if kinds[cfg.platform] != sig.kind:
        raise _problem(cfg_path, f"platform {cfg.platform} does not match a {sig.kind} model")
    mbs = cfg.max_batch_size
    if mbs < 0:
        raise _problem(cfg_path, f"max_batch_size {mbs} < 0")
    if mbs > 0 and not sig.dynamic_batch:
        raise _problem(cfg_path, f"max_batch_size {mbs} > 0 but the graph's batch dimension is fixed")
    if mbs > 0 and sig.batch_limit is not None and mbs > sig.batch_limit:
        raise _problem(cfg_path, f"max_batch_size {mbs} exceeds the engine profile's largest batch {sig.batch_limit}")
    if cfg.HasField("dynamic_batching"):
        if mbs == 0:
            raise _problem(cfg_path, "dynamic_batching needs max_batch_size > 0")
        too_big = [b for b in cfg.dynamic_batching.preferred_batch_size if b > mbs or b < 1]
        if too_big:
            raise _problem(cfg_path, f"preferred_batch_size {too_big} outside 1..max_batch_size {mbs}")
    for section, tensors, entries in (("input", sig.inputs, cfg.input), ("output", sig.outputs, cfg.output)):
        _check_tensors(cfg_path, section, tensors, entries, mbs, mc)
    if any(g.count < 1 for g in cfg.instance_group):
        raise _problem(cfg_path, "instance_group count must be >= 1")
    if sig.kind == "plan" and any(g.kind == mc.ModelInstanceGroup.Kind.Value("KIND_CPU") for g in cfg.instance_group):
        raise _problem(cfg_path, "a TensorRT plan cannot run on KIND_CPU instances")
    if sig.kind == "onnx" and "fcam" in sig.custom_domains and not cfg.model_operations.op_library_filename:
        raise _problem(cfg_path, "the graph holds fcam::CamPostprocess but model_operations names no op library")
    labels = [o.label_filename for o in cfg.output if o.label_filename]
    for lf in labels:
        lines = (model_dir / lf).read_text(encoding="utf-8").splitlines() if (model_dir / lf).is_file() else None
        if lines is None:
            raise _problem(model_dir, f"label file {lf} is missing")
        if sig.class_names and lines != sig.class_names:
            raise _problem(model_dir / lf, "labels differ from the model's class names")
    return cfg


def _check_tensors(cfg_path: Path, section: str, tensors: Sequence[Tensor], entries: Any, mbs: int, mc: Any) -> None:
    by_name = {e.name: e for e in entries}
    want = [t.name for t in tensors]
    if sorted(by_name) != sorted(want) or len(by_name) != len(entries):
        raise _problem(cfg_path, f"{section} tensors {sorted(by_name)} differ from the graph's {sorted(want)}")
    for t in tensors:
        e = by_name[t.name]
        got_type = mc.DataType.Name(e.data_type)
        if got_type != _TRITON_TYPES.get(t.dtype):
            raise _problem(cfg_path, f"{section} {t.name}: data_type {got_type}, the graph has {t.dtype}")
        dims = list(e.dims)
        if not dims:
            raise _problem(cfg_path, f"{section} {t.name}: empty dims (Triton requires at least one)")
        if any(d == 0 or d < -1 for d in dims):
            raise _problem(cfg_path, f"{section} {t.name}: dims {dims} (each must be >= 1 or -1)")
        graph = list(t.shape[1:]) if mbs > 0 else list(t.shape)
        shown = list(e.reshape.shape) if e.HasField("reshape") else dims
        if shown != graph:
            raise _problem(
                cfg_path,
                f"{section} {t.name}: dims {dims}"
                + (f" reshaped to {shown}" if e.HasField("reshape") else "")
                + f" do not match the graph's {graph} (batch dimension {'left out' if mbs > 0 else 'included'})",
            )
