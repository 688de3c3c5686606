"""Deploy profiles: TOML files (``export/profiles/*.toml``) that fix the ``fcam export`` options of a target.

Names follow ``<runtime>-<precision>_<static|dynamic>-<size>[_<batches>].toml`` (mmdeploy's convention). A profile
maps 1:1 onto :class:`ExportProfile`; command-line flags given explicitly override it. Schema::

    [export]
    postprocess = "onnx"        # none | onnx | custom-op
    method = "fcam"             # optional; default from the checkpoint kind
    opset = 18
    dynamic_batch = true
    size = [224, 224]           # optional; default the checkpoint's input size
    max_boxes = 8

    [engine]                    # optional: what `fcam build-engine` should be given for this target
    shapes = "1/8/32"           # --shapes (batch sizes min/opt/max)
    plugins = true              # the graph needs --plugins libfcam_trt_plugins.so
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcam_deploy.errors import ConfigError
from fcam_deploy.runtime.base import METHODS, POSTPROCESS_MODES

__all__ = ["ExportProfile", "load_profile"]

_EXPORT_KEYS = {"postprocess", "method", "opset", "dynamic_batch", "size", "max_boxes"}
_ENGINE_KEYS = {"shapes", "plugins"}


@dataclass(frozen=True)
class ExportProfile:
    """One deploy target's export options (see the module docstring)."""

    name: str
    postprocess: str = "onnx"
    method: str | None = None
    opset: int = 18
    dynamic_batch: bool = True
    size: tuple[int, int] | None = None
    max_boxes: int = 8
    engine_shapes: str | None = None
    engine_plugins: bool = False

    def __post_init__(self) -> None:
        if self.postprocess not in POSTPROCESS_MODES:
            raise ConfigError(f"profile {self.name}: postprocess must be one of {POSTPROCESS_MODES}")
        if self.method is not None and self.method not in METHODS:
            raise ConfigError(f"profile {self.name}: method must be one of {METHODS}")
        if not 18 <= self.opset <= 23:
            raise ConfigError(f"profile {self.name}: opset must be in [18, 23]")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ConfigError(f"profile {self.name}: size must be [H, W] with H, W >= 1")
        if self.max_boxes < 1:
            raise ConfigError(f"profile {self.name}: max_boxes must be >= 1")
        if self.engine_plugins and self.postprocess != "custom-op":
            raise ConfigError(f"profile {self.name}: [engine] plugins = true only makes sense with custom-op")

    def build_engine_command(self, onnx_path: str, plan_path: str) -> str | None:
        """The ``fcam build-engine`` command line this profile asks for (None without an [engine] table)."""
        if self.engine_shapes is None and not self.engine_plugins:
            return None
        cmd = f"fcam build-engine {onnx_path} --out {plan_path}"
        if self.engine_shapes:
            cmd += f" --shapes {self.engine_shapes}"
        if self.engine_plugins:
            cmd += " --plugins kernels/build/libfcam_trt_plugins.so"
        return cmd


def load_profile(path: str | Path) -> ExportProfile:
    """Read a profile TOML file.

    Raises:
        ConfigError: unreadable file, unknown tables/keys, or invalid values.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, installed as a dependency there
        import tomli as tomllib
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such profile (see export/profiles/)") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable profile ({exc})") from exc
    unknown = set(data) - {"export", "engine"}
    exp, eng = data.get("export", {}), data.get("engine", {})
    if unknown or not isinstance(exp, dict) or not isinstance(eng, dict):
        raise ConfigError(f"{path}: a profile has only [export] and [engine] tables, got {sorted(data)}")
    bad = (set(exp) - _EXPORT_KEYS) | {f"engine.{k}" for k in set(eng) - _ENGINE_KEYS}
    if bad:
        raise ConfigError(
            f"{path}: unknown keys {sorted(bad)} (allowed: {sorted(_EXPORT_KEYS)}, engine.{sorted(_ENGINE_KEYS)})"
        )
    try:
        size = exp.get("size")
        return ExportProfile(
            name=path.stem,
            postprocess=str(exp.get("postprocess", "onnx")),
            method=exp.get("method"),
            opset=int(exp.get("opset", 18)),
            dynamic_batch=bool(exp.get("dynamic_batch", True)),
            size=(int(size[0]), int(size[1])) if size is not None else None,
            max_boxes=int(exp.get("max_boxes", 8)),
            engine_shapes=None if eng.get("shapes") is None else str(eng["shapes"]),
            engine_plugins=bool(eng.get("plugins", False)),
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: invalid profile value ({exc})") from exc
