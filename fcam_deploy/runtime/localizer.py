"""``Localizer``: load a checkpoint, an ``.onnx`` or a TensorRT ``.plan`` and localize images of any size.

Example::

    from fcam_deploy.runtime import Localizer
    loc = Localizer.load("model.onnx")                  # backend="auto": ONNX Runtime for .onnx
    pred = loc.predict(PIL.Image.open("bird.jpg"))      # one image -> one Prediction
    preds = loc.predict([img_a, img_b])                  # a list -> a list
    pred.class_name, pred.score, pred.boxes, pred.map.shape == (h, w)

Data path (the same on every backend): uint8 RGB image -> PIL bilinear resize to the model's input size (the
evaluation transform; normalisation runs inside the graph) -> the engine (a batch of images per call) -> one native
post-processing call per batch that brings each image's model-size map back to **its original size** (bilinear,
half-pixel centres), thresholds it (``map > tau * max(map)``, the op's rule) and boxes the 8-connected components
of the mask in original pixels, largest first (:mod:`fcam_deploy.runtime.postprocess`). No torch is imported for
an ONNX Runtime or TensorRT model.

Threads: one budget per Localizer (``threads``, default the cores this process may use). ONNX Runtime gets that many
intra-op threads with spinning off, and the post-processing runs up to that many native threads after the engine
returns, so the stages never compete for the cores (the spinning pools of two runtimes slowed each other 2-4x).
Results are identical for every thread setting. :class:`StageTimes` collects the wall time of each stage from
inside :meth:`Localizer.predict`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np

from fcam_deploy.errors import ConfigError, InputError, ModelFormatError
from fcam_deploy.runtime.base import BACKENDS, ModelMetadata, Runner
from fcam_deploy.runtime.postprocess import Postprocessor, select_postprocessor
from fcam_deploy.runtime.preprocess import ImageLike, is_image_batch, resize_uint8, to_rgb_uint8

if TYPE_CHECKING:  # annotations only (typing.Self is Python >= 3.11)
    from typing_extensions import Self

__all__ = [
    "Box",
    "ImageLike",
    "Localizer",
    "Prediction",
    "StageTimes",
    "available_cores",
    "detect_model_kind",
    "to_rgb_uint8",
]

log = logging.getLogger(__name__)

_PLAN_SUFFIXES = (".plan", ".engine", ".trt")


class Box(NamedTuple):
    """An axis-aligned box, inclusive pixel coordinates ``x0 <= x1``, ``y0 <= y1`` in the original image."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Prediction:
    """Localization of one image.

    Attributes:
        class_index: predicted class (argmax of the logits).
        class_name: its name from the model metadata.
        score: softmax probability of ``class_index``, in [0, 1].
        logits: ``(K,)`` float32 class scores.
        map: ``(h, w)`` float32 in [0, 1], the method's map at the original image size.
        mask: ``(h, w)`` bool, ``map > tau * max(map)`` (the op's rule, kernels/README.md).
        boxes: boxes of the mask's 8-connected components (largest first, at most ``max_boxes``), in original
            pixels, inclusive.
        tau: threshold used for the mask.
        size: ``(h, w)`` of the original image.
        backend: runner backend that produced it.
    """

    class_index: int
    class_name: str
    score: float
    logits: np.ndarray = field(repr=False)
    map: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    boxes: tuple[Box, ...]
    tau: float
    size: tuple[int, int]
    backend: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "score": self.score,
            "boxes": [list(b) for b in self.boxes],
            "tau": self.tau,
            "size": list(self.size),
            "mask_fraction": float(self.mask.mean()) if self.mask.size else 0.0,
            "backend": self.backend,
        }


def detect_model_kind(path: Path) -> str:
    """``"checkpoint"`` (a directory with config.json), ``"onnx"`` or ``"tensorrt"`` (by suffix, checked later).

    Raises:
        ModelFormatError: path missing or of an unknown kind.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "checkpoint"
        raise ModelFormatError(f"{path}: a directory without config.json is not an fcam-deploy checkpoint")
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file or checkpoint directory")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in _PLAN_SUFFIXES:
        return "tensorrt"
    raise ModelFormatError(
        f"{path}: unknown model kind {suffix!r} (expected a checkpoint directory, a .onnx file or a TensorRT "
        f"{'/'.join(_PLAN_SUFFIXES)} plan)"
    )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class StageTimes:
    """Wall time spent in each stage of :meth:`Localizer.predict`, summed over the calls it was passed to.

    ``preprocess``: image intake + resize to the model size; ``inference``: the engine call; ``postprocess``:
    the native original-size post-processing + building the :class:`Prediction` objects. Seconds. Safe to share
    between threads (updates take a lock).
    """

    preprocess_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0
    calls: int = 0
    images: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, preprocess_s: float, inference_s: float, postprocess_s: float, images: int) -> None:
        with self._lock:
            self.preprocess_s += preprocess_s
            self.inference_s += inference_s
            self.postprocess_s += postprocess_s
            self.calls += 1
            self.images += images

    @property
    def total_s(self) -> float:
        return self.preprocess_s + self.inference_s + self.postprocess_s

    def share(self, stage: str) -> float:
        """Fraction of :attr:`total_s` spent in ``stage`` (``preprocess``, ``inference`` or ``postprocess``)."""
        total = self.total_s
        return getattr(self, f"{stage}_s") / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "preprocess_s": self.preprocess_s,
            "inference_s": self.inference_s,
            "postprocess_s": self.postprocess_s,
            "calls": self.calls,
            "images": self.images,
        }


class Localizer:
    """One model on one backend; :meth:`predict` is thread-safe and keeps no per-call state.

    Build it with :meth:`load`.

    Args:
        runner: the engine (see :class:`fcam_deploy.runtime.base.Runner`).
        max_boxes: boxes kept per image (largest first).
        batch_size: images per engine call (1 for a model exported with a fixed batch).
        threads: the native post-processing's worker threads (0 = :func:`available_cores`); :meth:`load` uses the
            same budget for the engine.
        postprocessor: override of the post-processing implementation (default: :func:`select_postprocessor`).
    """

    def __init__(
        self,
        runner: Runner,
        max_boxes: int = 8,
        batch_size: int = 16,
        threads: int = 0,
        postprocessor: Postprocessor | None = None,
    ) -> None:
        if max_boxes < 1 or batch_size < 1 or threads < 0:
            raise ConfigError(
                f"max_boxes and batch_size must be >= 1 and threads >= 0, got {max_boxes}, {batch_size}, {threads}"
            )
        self._runner = runner
        self._max_boxes = int(max_boxes)
        self._batch_size = int(batch_size) if runner.metadata.dynamic_batch else 1
        self._threads = int(threads) or available_cores()
        self._post = postprocessor or select_postprocessor(runner.backend)
        self._lock = None if runner.thread_safe else threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str = "auto",
        device: str = "cpu",
        *,
        plugin_library: str | Path | None = None,
        method: str | None = None,
        postprocess: str = "onnx",
        max_boxes: int = 8,
        batch_size: int = 16,
        threads: int = 0,
    ) -> Localizer:
        """Load a model.

        Args:
            path: a checkpoint directory, an ``.onnx`` from ``fcam export`` or a ``.plan`` from ``fcam build-engine``.
            backend: ``auto`` (checkpoint -> torch, .onnx -> onnxruntime, .plan -> tensorrt), or one explicitly.
            device: ``cpu`` or ``cuda[:N]`` (torch/onnxruntime); TensorRT defaults to ``cuda:0``.
            plugin_library: custom-op library (ORT: ``libfcam_ort_ops.so``; TensorRT: the plugin ``.so``).
            method, postprocess: for checkpoints only (exported models carry their own).
            max_boxes: boxes kept per image.
            batch_size: images per runner call.
            threads: the thread budget (0 = the cores this process may use): ONNX Runtime's intra-op threads
                (spinning off) and the native post-processing's workers, which run one after the other. The torch
                backend keeps torch's own pool (``torch.set_num_threads``).

        Raises:
            ModelFormatError: the file is of another kind than the backend takes, or of another format version.
            BackendUnavailableError: the backend, its device or a plugin library is missing.
            ConfigError: unknown backend, or bad ``max_boxes`` / ``batch_size`` / ``threads``.
        """
        path = Path(path)
        if backend not in ("auto", *BACKENDS):
            raise ConfigError(f"backend must be one of auto, {', '.join(BACKENDS)}; got {backend!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"threads must be an int >= 0 (0 = all cores this process may use), got {threads!r}")
        kind = detect_model_kind(path)
        if backend == "auto":
            backend = {"checkpoint": "torch", "onnx": "onnxruntime", "tensorrt": "tensorrt"}[kind]
        wanted = {"torch": "checkpoint", "onnxruntime": "onnx", "tensorrt": "tensorrt"}[backend]
        if kind != wanted:
            hints = {
                "checkpoint": "a checkpoint directory (use backend='torch', or `fcam export` it first)",
                "onnx": "an ONNX file (use backend='onnxruntime', or `fcam build-engine` it for TensorRT)",
                "tensorrt": "a TensorRT plan (use backend='tensorrt')",
            }
            raise ModelFormatError(f"{path} is {hints[kind]}; backend {backend!r} takes {wanted} models")
        budget = threads or available_cores()
        runner: Runner
        if backend == "torch":
            from fcam_deploy._extras import require_extra

            require_extra("train", f"the torch backend (checkpoint directory {path})")
            from fcam_deploy.runtime.torch_runner import TorchRunner

            runner = TorchRunner(path, device=device, method=method, postprocess=postprocess, max_boxes=max_boxes)
        elif backend == "onnxruntime":
            from fcam_deploy.runtime.ort import OrtRunner

            runner = OrtRunner(path, device=device, plugin_library=plugin_library, threads=budget)
        else:
            from fcam_deploy.runtime import tensorrt as trt_runtime

            trt_device = device if device.startswith("cuda") else "cuda:0"
            runner = trt_runtime.open_runner(path, device=trt_device, plugin_library=plugin_library)
        return cls(runner, max_boxes=max_boxes, batch_size=batch_size, threads=budget)

    @property
    def runner(self) -> Runner:
        return self._runner

    @property
    def metadata(self) -> ModelMetadata:
        return self._runner.metadata

    @property
    def backend(self) -> str:
        return self._runner.backend

    @property
    def threads(self) -> int:
        """The native post-processing's worker threads (the Localizer's thread budget)."""
        return self._threads

    @property
    def postprocessor(self) -> Postprocessor:
        """The function that post-processes a batch (see :mod:`fcam_deploy.runtime.postprocess`)."""
        return self._post

    @property
    def providers(self) -> tuple[str, ...]:
        """What actually executes the graph (e.g. ORT's ``get_providers()``)."""
        return self._runner.providers

    @property
    def fell_back_to_cpu(self) -> bool:
        """True when a GPU was requested but the model runs on the CPU (a warning was logged at load)."""
        return self._runner.fell_back_to_cpu

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def preprocess(self, images: Sequence[ImageLike]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Images -> (uint8 (N, H, W, 3) batch at the model size, original (h, w) of each).

        Raises:
            InputError: an image is unusable (the message names its index).
        """
        size = self.metadata.input_size
        batch = np.empty((len(images), size[0], size[1], 3), dtype=np.uint8)
        sizes = []
        for i, img in enumerate(images):
            try:
                arr = to_rgb_uint8(img)
            except InputError as exc:
                raise InputError(f"image {i}: {exc}") from exc
            sizes.append((int(arr.shape[0]), int(arr.shape[1])))
            batch[i] = resize_uint8(arr, size)
        return batch, sizes

    @overload
    def predict(self, images: Sequence[ImageLike], *, timings: StageTimes | None = None) -> list[Prediction]: ...

    @overload
    def predict(self, images: ImageLike, *, timings: StageTimes | None = None) -> Prediction: ...

    def predict(self, images: Any, *, timings: StageTimes | None = None) -> Prediction | list[Prediction]:
        """Localize one image (-> :class:`Prediction`) or a list/tuple of images (-> list of them).

        A 4-D tensor ``(N, 3, H, W)`` counts as a list of N images. See :func:`to_rgb_uint8` for image types.

        Args:
            images: one image or a sequence of them, any sizes.
            timings: when given, the wall time of each stage of this call is added to it.

        Raises:
            InputError: an image is unusable (the message names its index).
        """
        single = not is_image_batch(images)
        batch = [images] if single else list(images)
        if not batch:
            return []
        out: list[Prediction] = []
        for start in range(0, len(batch), self._batch_size):
            chunk = batch[start : start + self._batch_size]
            t0 = time.perf_counter()
            x, sizes = self.preprocess(chunk)
            t1 = time.perf_counter()
            if self._lock is None:
                raw = self._runner.run(x)
            else:
                with self._lock:
                    raw = self._runner.run(x)
            t2 = time.perf_counter()
            out.extend(self._postprocess(raw, sizes))
            if timings is not None:
                timings.add(t1 - t0, t2 - t1, time.perf_counter() - t2, len(chunk))
        return out[0] if single else out

    def _postprocess(self, raw: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> list[Prediction]:
        meta = self.metadata
        logits = np.asarray(raw["logits"], dtype=np.float32)
        classes = np.asarray(raw["pred_class"]).astype(np.int64)
        z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        res = self._post(np.asarray(raw["map"], dtype=np.float32), sizes, meta.tau, self._max_boxes, self._threads)
        preds = []
        for i, size in enumerate(sizes):
            cls_idx = int(classes[i])
            n = int(res.count[i])
            preds.append(
                Prediction(
                    class_index=cls_idx,
                    class_name=meta.class_names[cls_idx] if 0 <= cls_idx < meta.num_classes else str(cls_idx),
                    score=float(probs[i, cls_idx]) if 0 <= cls_idx < probs.shape[1] else float("nan"),
                    logits=logits[i].copy(),
                    map=res.fulls[i],
                    mask=res.masks[i],
                    boxes=tuple(Box(*(int(v) for v in row)) for row in res.boxes[i, :n]),
                    tau=meta.tau,
                    size=size,
                    backend=self.backend,
                )
            )
        return preds

    def describe(self) -> str:
        """One-line JSON description (backend, providers, fallback, threads, post-processing, metadata)."""
        return json.dumps(
            {
                "backend": self.backend,
                "providers": list(self.providers),
                "fell_back_to_cpu": self.fell_back_to_cpu,
                "threads": self._threads,
                "postprocessor": getattr(self._post, "__name__", type(self._post).__name__),
                "method": self.metadata.method,
                "postprocess": self.metadata.postprocess,
                "input_size": list(self.metadata.input_size),
                "tau": self.metadata.tau,
            }
        )
