"""Typed training configurations, loaded from small JSON files in ``fcam_deploy/train/configs/``.

``configs/classifier/<name>.json`` holds a :class:`ClassifierTrainConfig`, ``configs/fcam/<name>.json`` an
:class:`FCAMTrainConfig` (nested ``seeds`` / ``crf`` / ``elb`` objects map onto :class:`SeedConfig`,
:class:`CRFConfig`, :class:`ELBConfig`). Unknown keys are rejected with a :class:`ConfigError`, so a typo never
silently falls back to a default. ``cub_resnet50`` files carry the official README settings; ``demo`` files the
CPU demo's settings, each deviation explained in its ``"notes"`` entry.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from fcam_deploy.errors import ConfigError
from fcam_deploy.train.crf import CRFConfig
from fcam_deploy.train.elb import ELBConfig
from fcam_deploy.train.seeds import SeedConfig

__all__ = [
    "ClassifierTrainConfig",
    "FCAMTrainConfig",
    "OptimConfig",
    "available_configs",
    "config_to_dict",
    "load_train_config",
]


@dataclass(frozen=True)
class OptimConfig:
    """SGD with a step schedule, stepped once per epoch: lr * gamma ** (epoch // step_size), floored at min_lr.

    ``high_lr_prefixes`` name parameter-name prefixes that get ``lr * high_lr_ratio`` (stage 1's ×10 group);
    a prefix that matches no parameter is an error.
    """

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    step_size: int = 1000
    gamma: float = 0.1
    min_lr: float = 1e-7
    high_lr_prefixes: tuple[str, ...] = ()
    high_lr_ratio: float = 10.0


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Stage 1 (STD_CL): backbone + GAP + linear trained with cross-entropy.

    ``bn_momentum``: if set, every BatchNorm of the classifier gets this running-stat momentum before training
    (timm's TF-ported EfficientNet-Lite BNs use 0.01, too slow to adapt the ImageNet statistics in a short run:
    measured eval-mode top-1 33 % vs train-mode 97 % after 141 steps on the demo data).
    """

    arch: str = "resnet50"
    input_size: int = 224
    resize_size: int = 256
    epochs: int = 50
    batch_size: int = 32
    optim: OptimConfig = OptimConfig(lr=0.0017, step_size=15, high_lr_prefixes=("head",))
    select_metric: str = "MaxBoxAccV2"
    val_every: int = 1
    val_curve_interval: float = 0.01
    seed: int = 0
    bn_momentum: float | None = None
    notes: str = ""


@dataclass(frozen=True)
class FCAMTrainConfig:
    """Stage 2 (F_CL): frozen classifier, U-Net decoder trained with seeds + CRF + size constraint."""

    epochs: int = 50
    batch_size: int = 32
    resize_size: int = 256
    optim: OptimConfig = OptimConfig(lr=0.01, step_size=1000)
    seed_lambda: float = 1.0
    seeds: SeedConfig = field(default_factory=SeedConfig)
    crf: CRFConfig = field(default_factory=CRFConfig)
    elb: ELBConfig = field(default_factory=ELBConfig)
    select_metric: str = "MaxBoxAccV2"
    val_curve_interval: float = 0.01
    seed: int = 0
    notes: str = ""


_SELECT = ("MaxBoxAcc", "MaxBoxAccV2", "PxAP")
_C = TypeVar("_C")


def _field_default(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default value, from ``default`` or ``default_factory`` (MISSING when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _build(cls: type[_C], data: dict[str, Any], where: str) -> _C:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__} (valid: {sorted(fields)})")
    kw: dict[str, Any] = {}
    nested = {"optim": OptimConfig, "seeds": SeedConfig, "crf": CRFConfig, "elb": ELBConfig}
    for k, v in data.items():
        default = _field_default(fields[k]) if k in nested else None
        if k in nested and dataclasses.is_dataclass(default):
            base = dataclasses.asdict(default)  # type: ignore[arg-type]
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{k}' must be an object")
            merged = {**base, **v}
            kw[k] = _build(nested[k], merged, f"{where}.{k}")
        elif isinstance(v, list):
            kw[k] = tuple(v)
        else:
            kw[k] = v
    try:
        obj = cls(**kw)
    except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"{where}: {exc}") from exc
    except ConfigError as exc:  # a dataclass's own check (__post_init__)
        raise ConfigError(f"{where}: {exc}") from exc
    _validate(obj, where)
    return obj


def _validate(obj: Any, where: str) -> None:
    if isinstance(obj, (ClassifierTrainConfig, FCAMTrainConfig)):
        if obj.epochs < 0 or obj.batch_size < 1:
            raise ConfigError(f"{where}: epochs must be >= 0 and batch_size >= 1")
        if obj.select_metric not in _SELECT:
            raise ConfigError(f"{where}: select_metric must be one of {_SELECT}, got {obj.select_metric!r}")
        if not 0.0 < obj.val_curve_interval < 1.0:
            raise ConfigError(f"{where}: val_curve_interval must be in (0, 1), got {obj.val_curve_interval!r}")
    if isinstance(obj, OptimConfig):
        if obj.name != "sgd":
            raise ConfigError(f"{where}: only optimizer 'sgd' is supported, got {obj.name!r}")
        if obj.lr <= 0:
            raise ConfigError(f"{where}: lr must be > 0")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def available_configs(kind: str) -> list[str]:
    """Names of the built-in configs of ``kind`` ("classifier" or "fcam")."""
    root = resources.files("fcam_deploy.train").joinpath("configs").joinpath(kind)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_train_config(
    kind: str, name_or_path: str | Path, overrides: dict[str, Any] | None = None
) -> ClassifierTrainConfig | FCAMTrainConfig:
    """Load a built-in config by name (e.g. ``"demo"``) or a JSON file by path, then apply ``overrides``.

    Overrides are merged at the top level, and one level deep for nested objects (``{"crf": {"lam": 1e-8}}``).

    Raises:
        ConfigError: unknown kind/name, unreadable JSON, unknown keys, invalid values.
    """
    cls: type[Any]
    if kind == "classifier":
        cls = ClassifierTrainConfig
    elif kind == "fcam":
        cls = FCAMTrainConfig
    else:
        raise ConfigError(f"unknown config kind {kind!r} (use 'classifier' or 'fcam')")
    p = Path(name_or_path)
    if p.suffix == ".json" or p.is_file():  # a folder named like a built-in config is not a config file
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        text, where = p.read_text(encoding="utf-8"), str(p)
    else:
        res = resources.files("fcam_deploy.train").joinpath("configs").joinpath(kind).joinpath(f"{name_or_path}.json")
        if not res.is_file():
            raise ConfigError(f"no built-in {kind} config {name_or_path!r} (available: {available_configs(kind)})")
        text, where = res.read_text(encoding="utf-8"), f"{kind}/{name_or_path}.json"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON: {exc}") from exc
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return _build(cls, data, where)
