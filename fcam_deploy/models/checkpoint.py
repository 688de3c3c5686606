"""Checkpoints: a directory holding ``model.safetensors`` + ``config.json`` (DESIGN.md "Models").

Writing is atomic at the directory level: the two files are written into a fresh temporary sibling directory
(same parent, so the same file system), each flushed and ``fsync``-ed, the temporary directory is ``fsync``-ed,
and only then does it replace the target. On Linux the replacement is a single ``renameat2(RENAME_EXCHANGE)`` (the
old and new directories swap in one step, then the old one is deleted); elsewhere, or where the file system
refuses the exchange, the old directory is first renamed aside and restored if the second rename fails. A reader
therefore sees the old complete checkpoint or the new complete one, never a mix or a partial file. ``config.json``
also records the SHA-256 of ``model.safetensors``, so a torn copy made by other tools is detected on load.

Loading never unpickles: weights are safetensors, the config is JSON; the model is rebuilt from ``config.json``
alone (no pretrained file is needed) and every tensor name, shape and dtype is checked before loading.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import operator
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcam_deploy._io import current_umask, pid_alive
from fcam_deploy._limits import MAX_INPUT_SIDE, is_finite_number
from fcam_deploy.errors import CheckpointError, ConfigError
from fcam_deploy.models.backbones import BACKBONES
from fcam_deploy.models.classifier import CAMClassifier
from fcam_deploy.models.fcam import FCAM

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointMeta",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "fcam-deploy-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class CheckpointMeta:
    """What ``config.json`` says besides the weights.

    Attributes:
        arch: backbone key (:data:`~fcam_deploy.models.BACKBONES`).
        num_classes: K.
        class_names: K names (index = label); empty list when unknown.
        input_size: [H, W] the model was trained/evaluated at.
        mean, std: per-channel RGB normalisation of the input (in [0, 1] pixel units).
        threshold: validation-optimal map threshold τ in [0, 1], or ``None``.
        kind: ``"classifier"`` or ``"fcam"`` (set by :func:`save_checkpoint` from the model).
        extra: free-form JSON-serialisable data (training config, epoch, metrics ...).
        fcam_deploy_version: package version that wrote the checkpoint (set on save).
    """

    arch: str
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    threshold: float | None = None
    kind: str = "classifier"
    extra: dict[str, Any] = field(default_factory=dict)
    fcam_deploy_version: str = ""

    def to_config(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "kind": self.kind,
            "arch": self.arch,
            "num_classes": int(self.num_classes),
            "class_names": list(self.class_names),
            "input_size": [int(v) for v in self.input_size],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "threshold": None if self.threshold is None else float(self.threshold),
            "fcam_deploy_version": self.fcam_deploy_version,
            "extra": self.extra,
        }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fcam-deploy")
    except PackageNotFoundError:  # not installed (running from a source tree)
        return "0+unknown"


def _validate_meta(meta: CheckpointMeta, where: str) -> None:
    """Raise CheckpointError naming the first bad field."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: {problem}")

    if meta.kind not in ("classifier", "fcam"):
        raise bad(f"kind must be 'classifier' or 'fcam', got {meta.kind!r}")
    if meta.arch not in BACKBONES:
        raise bad(f"unknown arch {meta.arch!r} (known: {', '.join(sorted(BACKBONES))})")
    if not isinstance(meta.num_classes, int) or isinstance(meta.num_classes, bool) or meta.num_classes < 1:
        raise bad(f"num_classes must be a positive integer, got {meta.num_classes!r}")
    if not isinstance(meta.class_names, list) or not all(isinstance(c, str) and c for c in meta.class_names):
        raise bad(f"class_names must be a list of non-empty strings, got {meta.class_names!r}")
    if meta.class_names and len(meta.class_names) != meta.num_classes:
        raise bad(f"{len(meta.class_names)} class_names for num_classes={meta.num_classes}")
    if len(set(meta.class_names)) != len(meta.class_names):
        raise bad("class_names must be unique")
    size = meta.input_size
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INPUT_SIDE for v in size)
    ):
        raise bad(f"input_size must be [H, W], two integers in [1, {MAX_INPUT_SIDE}], got {size!r}")
    for name in ("mean", "std"):
        vals = getattr(meta, name)
        if not isinstance(vals, (list, tuple)) or len(vals) != 3 or not all(is_finite_number(v) for v in vals):
            raise bad(f"{name} must be 3 finite numbers (RGB, in [0, 1] pixel units), got {vals!r}")
    if any(float(v) <= 0 for v in meta.std):
        raise bad(f"std must be positive, got {meta.std!r}")
    if meta.threshold is not None and (not is_finite_number(meta.threshold) or not 0.0 <= float(meta.threshold) <= 1.0):
        raise bad(f"threshold must be null or a number in [0, 1], got {meta.threshold!r}")
    if not isinstance(meta.extra, dict):
        raise bad("extra must be a JSON object")


# ----------------------------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False when unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def _replace_dir(tmp: Path, target: Path) -> None:
    """Make ``tmp`` appear at ``target`` atomically (old content, if any, is removed afterwards)."""
    if not target.exists():
        os.replace(tmp, target)  # rename of a directory onto a missing path: atomic
        return
    if not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory; remove it or choose another path")
    if _exchange(tmp, target):
        shutil.rmtree(tmp)  # tmp now holds the old checkpoint
        return
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside)


def _remove_stale_tmp_dirs(directory: Path) -> None:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>`` leftovers of writers killed mid-save (dead pids only)."""
    tmp_re = re.compile(rf"^\.{re.escape(directory.name)}\.(?:tmp-(?P<a>[0-9]+)-.+|old-(?P<b>[0-9]+))$")
    try:
        entries = list(directory.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        m = tmp_re.match(entry.name)
        if m is None or not entry.is_dir() or entry.is_symlink():
            continue
        if not pid_alive(int(m.group("a") or m.group("b"))):
            shutil.rmtree(entry, ignore_errors=True)


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        out[k] = v.detach().to("cpu").contiguous()
    return out


def save_checkpoint(directory: str | Path, model: CAMClassifier | FCAM, meta: CheckpointMeta) -> Path:
    """Write ``model`` and ``meta`` to ``directory`` atomically (see the module docstring).

    Args:
        directory: checkpoint directory; created or replaced as a whole. Its parent must exist.
        model: a :class:`CAMClassifier` or :class:`FCAM`; its arch and num_classes must equal ``meta``'s.
        meta: the config fields; ``kind`` and ``fcam_deploy_version`` are filled in from the model/package.

    Returns:
        The checkpoint directory.

    Raises:
        CheckpointError: bad meta, model/meta mismatch, unwritable parent.
    """
    from safetensors.torch import save as st_save

    directory = Path(directory)
    if isinstance(model, FCAM):
        kind = "fcam"
    elif isinstance(model, CAMClassifier):
        kind = "classifier"
    else:
        raise CheckpointError(f"can only save a CAMClassifier or FCAM, got {type(model).__name__}")
    meta = CheckpointMeta(**{**meta.__dict__, "kind": kind, "fcam_deploy_version": _package_version()})
    try:  # NumPy integers become ints; floats (96.7) and other non-integers are refused, never truncated
        meta.input_size = tuple(operator.index(v) for v in meta.input_size)  # type: ignore[assignment]
    except TypeError:
        raise CheckpointError(f"checkpoint meta: input_size must be [H, W] integers, got {meta.input_size!r}") from None
    if meta.arch != model.arch or meta.num_classes != model.num_classes:
        raise CheckpointError(
            f"meta says arch={meta.arch!r} num_classes={meta.num_classes}, model is arch={model.arch!r} "
            f"num_classes={model.num_classes}"
        )
    _validate_meta(meta, "checkpoint meta")
    parent = directory.parent
    if not parent.is_dir():
        raise CheckpointError(f"parent directory {parent} of checkpoint {directory} does not exist")

    tensors = _state_dict_for_save(model)
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(
            f"refusing to save non-finite weights: {bad[0]} (fix: the training diverged; lower the "
            "learning rate or resume from an earlier checkpoint)"
        )
    blob = st_save(tensors, metadata={"format": CHECKPOINT_FORMAT})
    config = meta.to_config()
    config["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    try:
        text = json.dumps(config, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc

    _remove_stale_tmp_dirs(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would make the checkpoint private
        _write_file(tmp / WEIGHTS_NAME, blob)
        _write_file(tmp / CONFIG_NAME, text.encode("utf-8"))
        _fsync_dir(tmp)
        _replace_dir(tmp, directory)
        _fsync_dir(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


# ----------------------------------------------------------------------------------------------- reading


def read_checkpoint_meta(directory: str | Path) -> CheckpointMeta:
    """Read and validate ``config.json`` of a checkpoint directory (weights are not touched)."""
    return _read_config(Path(directory))[0]


def _read_config(directory: Path) -> tuple[CheckpointMeta, str | None]:
    cfg_path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} is not a directory (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    if not cfg_path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {CONFIG_NAME}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object")
    if cfg.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{cfg_path}: format is {cfg.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    ver = cfg.get("format_version")
    if ver != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: format_version {ver!r} is not supported (this fcam-deploy reads "
            f"{CHECKPOINT_FORMAT_VERSION}); re-export the checkpoint with a matching version"
        )
    required = ("kind", "arch", "num_classes", "class_names", "input_size", "mean", "std", "threshold")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise CheckpointError(f"{cfg_path}: missing keys {missing}")
    meta = CheckpointMeta(
        arch=cfg["arch"],
        num_classes=cfg["num_classes"],
        class_names=cfg["class_names"],
        input_size=cfg["input_size"],
        mean=cfg["mean"],
        std=cfg["std"],
        threshold=cfg["threshold"],
        kind=cfg["kind"],
        extra=cfg.get("extra", {}),
        fcam_deploy_version=str(cfg.get("fcam_deploy_version", "")),
    )
    _validate_meta(meta, str(cfg_path))
    meta.input_size = tuple(meta.input_size)  # type: ignore[assignment]
    meta.mean = tuple(float(v) for v in meta.mean)  # type: ignore[assignment]
    meta.std = tuple(float(v) for v in meta.std)  # type: ignore[assignment]
    sha = cfg.get("weights_sha256")
    if sha is not None and not isinstance(sha, str):
        raise CheckpointError(f"{cfg_path}: weights_sha256 must be a hex string")
    meta.extra = dict(meta.extra)
    return meta, sha


def build_model(meta: CheckpointMeta, device: str | torch.device = "cpu") -> CAMClassifier | FCAM:
    """Build a randomly initialised model of ``meta``'s kind/arch/num_classes (no pretrained file).

    ``device="meta"`` builds the structure without allocating or initialising storage (used by
    :func:`load_checkpoint`, which then assigns the loaded tensors).
    """
    try:
        with torch.device(device):
            clf = CAMClassifier(meta.arch, meta.num_classes)
            return FCAM(clf) if meta.kind == "fcam" else clf
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def load_checkpoint(
    directory: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[CAMClassifier | FCAM, CheckpointMeta]:
    """Rebuild the model of a checkpoint directory from ``config.json`` and load ``model.safetensors``.

    Returns:
        ``(model, meta)``; the model is in eval mode on ``map_location`` and carries ``model.input_size`` =
        ``meta.input_size`` (the size :func:`fcam_deploy.metrics.evaluate_model` runs it at).

    Raises:
        CheckpointError: missing/corrupt files, unknown format or version, unknown arch, digest mismatch,
            missing/unexpected tensors, or a shape/dtype that does not match the architecture.
    """
    from safetensors.torch import load as st_load

    directory = Path(directory)
    meta, sha = _read_config(directory)
    w_path = directory / WEIGHTS_NAME
    if not w_path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_NAME}")
    blob = w_path.read_bytes()
    if sha is not None and hashlib.sha256(blob).hexdigest() != sha:
        raise CheckpointError(
            f"{w_path} does not match the SHA-256 recorded in {CONFIG_NAME} (torn or mixed copy); "
            "restore the checkpoint directory as a whole"
        )
    try:
        sd = st_load(blob)
    except Exception as exc:  # safetensors raises SafetensorError or others on corrupt input
        raise CheckpointError(f"{w_path} is not a readable safetensors file: {exc}") from exc
    model = build_model(meta, device="meta")
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{w_path} does not fit a {meta.kind} {meta.arch!r} with {meta.num_classes} classes: "
            f"{len(missing)} missing tensors (first: {missing[:3]}), {len(unexpected)} unexpected "
            f"(first: {unexpected[:3]})"
        )
    bad = [
        f"{k!r} is {sd[k].dtype} {tuple(sd[k].shape)}, the architecture needs {own[k].dtype} {tuple(own[k].shape)}"
        for k in sorted(sd)
        if tuple(sd[k].shape) != tuple(own[k].shape) or sd[k].dtype != own[k].dtype
    ]
    if bad:
        raise CheckpointError(f"{w_path}: {len(bad)} tensors do not fit {meta.arch!r}: tensor " + "; ".join(bad[:3]))
    nonfinite = _non_finite(sd)
    if nonfinite:
        raise CheckpointError(
            f"{w_path}: {len(nonfinite)} tensors hold NaN or infinity (first: {nonfinite[0]!r}); the checkpoint is "
            "corrupt or from a diverged run (fix: use an earlier checkpoint)"
        )
    model.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{w_path}: tensors {left[:3]} were not restored")
    model.to(map_location)
    model.eval()
    model.input_size = (int(meta.input_size[0]), int(meta.input_size[1]))
    return model, meta
