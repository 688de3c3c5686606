"""Benchmark suite definitions (JSON files in ``fcam_deploy/bench/suites/``, also reachable as
``benchmarks/suites/`` in a source checkout) parsed into a validated, frozen :class:`SuiteConfig`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fcam_deploy.errors import ConfigError

__all__ = ["ALL_BACKENDS", "ALL_METHODS", "SuiteConfig", "load_suite", "suite_dir"]

#: Methods the harness knows. ``fcam`` needs an F-CAM model; ``lpcam`` fits prototypes on the training split.
ALL_METHODS: tuple[str, ...] = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "lpcam", "fcam")
#: ``torch`` = eager forward-only graph (closed forms); ``torch-autograd`` = the gradient methods through autograd;
#: ``torch-compile`` = torch.compile of the eager graph; ``onnxruntime`` = the exported graph on ORT's first
#: available provider list (CPU here); ``tensorrt`` = a TensorRT engine (skipped with a reason when absent).
ALL_BACKENDS: tuple[str, ...] = ("torch", "torch-autograd", "torch-compile", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class SuiteConfig:
    """One benchmark suite.

    Attributes:
        name: suite name.
        archs: backbones benchmarked with random weights (latency / FLOPs; F-CAM with a random decoder).
        fallback_archs: benchmarked (random weights) only when neither ``archs`` nor a checkpoint is given.
        methods: subset of :data:`ALL_METHODS`.
        random_methods: methods run on the random-weight ``archs`` (default: ``methods``).
        backends: subset of :data:`ALL_BACKENDS`.
        batches: batch sizes for latency.
        resolutions: square input sides for latency/FLOPs; ``0`` means the model's own input size.
        warmup, iters: latency settings per measurement.
        end_to_end: also time ``Localizer.predict`` on raw images (preprocess -> boxes).
        e2e_image_size: (W, H) of the raw images for the end-to-end scope.
        localization_limit: test images scored per method (0 = skip localization).
        parity_limit: test images compared per backend against torch (0 = skip parity).
        synth: ``fcam data synth`` settings used when no ``--data`` is given (size, classes, counts, seed).
        cam_curve_interval: threshold step of the box metrics.
        evaluator_maps, postprocess_maps: sizes of the side-by-side evaluator / post-process ratio runs.
        lpcam_fit_images: training images LPCAM prototypes are fitted on, the same number per class
            (:func:`fcam_deploy.cams.class_balanced_indices`).
        int8: also time the INT8 (ORT static QDQ) graph end to end, and, on a trained checkpoint, its MaxBoxAccV2
            / PxAP difference to fp32 on the test split.
        int8_calibration_images: training images the INT8 graph is calibrated on.
        peers: methods (``gradcam``, ``gradcampp``) timed against the ``grad-cam`` package and TorchCAM.
        peers_on_random: also run the peers on the random-weight ``archs`` (else the trained checkpoint only).
        peer_images: test images whose maps are compared with the peers'.
    """

    name: str
    archs: tuple[str, ...] = ()
    fallback_archs: tuple[str, ...] = ("resnet18_s8",)
    methods: tuple[str, ...] = ALL_METHODS
    random_methods: tuple[str, ...] | None = None
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    batches: tuple[int, ...] = (1, 8)
    resolutions: tuple[int, ...] = (0,)
    warmup: int = 2
    iters: int = 10
    end_to_end: bool = True
    e2e_image_size: tuple[int, int] = (500, 375)
    localization_limit: int = 100
    parity_limit: int = 32
    synth: dict[str, Any] = field(
        default_factory=lambda: {"size": 96, "classes": 4, "train": 64, "val": 16, "test": 100, "seed": 0}
    )
    cam_curve_interval: float = 0.01
    evaluator_maps: int = 20
    postprocess_maps: int = 64
    lpcam_fit_images: int = 400
    int8: bool = False
    int8_calibration_images: int = 64
    peers: tuple[str, ...] = ()
    peers_on_random: bool = False
    peer_images: int = 8

    def __post_init__(self) -> None:
        bad = set(self.methods) - set(ALL_METHODS)
        if bad:
            raise ConfigError(f"suite {self.name!r}: unknown methods {sorted(bad)} (known: {ALL_METHODS})")
        bad = set(self.random_methods or ()) - set(ALL_METHODS)
        if bad:
            raise ConfigError(f"suite {self.name!r}: unknown random_methods {sorted(bad)} (known: {ALL_METHODS})")
        bad = set(self.backends) - set(ALL_BACKENDS)
        if bad:
            raise ConfigError(f"suite {self.name!r}: unknown backends {sorted(bad)} (known: {ALL_BACKENDS})")
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"suite {self.name!r}: batches must be positive, got {self.batches}")
        if min(self.resolutions, default=0) < 0:
            raise ConfigError(f"suite {self.name!r}: resolutions must be >= 0, got {self.resolutions}")
        bad = set(self.peers) - {"gradcam", "gradcampp"}
        if bad:
            raise ConfigError(f"suite {self.name!r}: peers compare gradcam / gradcampp only, got {sorted(bad)}")
        if self.int8_calibration_images < 1 or self.peer_images < 1:
            raise ConfigError(f"suite {self.name!r}: int8_calibration_images and peer_images must be >= 1")
        if self.iters < 1 or self.warmup < 0:
            raise ConfigError(f"suite {self.name!r}: iters >= 1 and warmup >= 0 required")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> SuiteConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"description", "schema_version"}
        if unknown:
            raise ConfigError(f"{source}: unknown suite keys {sorted(unknown)} (known: {sorted(known)})")
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k in ("description", "schema_version"):
                continue
            kw[k] = tuple(v) if isinstance(v, list) else v
        if "name" not in kw:
            raise ConfigError(f"{source}: a suite needs a 'name'")
        return cls(**kw)


def suite_dir() -> Path:
    """Folder of the built-in suite definitions (``benchmarks/suites`` links here in a source checkout)."""
    return Path(__file__).resolve().parent / "suites"


def load_suite(name_or_path: str | Path) -> SuiteConfig:
    """A built-in suite by name (``quick``, ``standard``, ``full``) or a suite JSON file by path.

    Raises:
        ConfigError: unknown name, unreadable file, or an invalid definition.
    """
    p = Path(name_or_path)
    if not p.is_file():
        p = suite_dir() / f"{name_or_path}.json"
    if not p.is_file():
        names = sorted(q.stem for q in suite_dir().glob("*.json"))
        raise ConfigError(f"unknown suite {str(name_or_path)!r}: pass one of {names} or a suite JSON path")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read suite JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a suite file holds one JSON object")
    return SuiteConfig.from_dict(data, str(p))
