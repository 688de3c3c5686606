"""``Localizer``: load a checkpoint, an ``.onnx`` or a TensorRT ``.plan`` and localize images of any size.

Example::

    from fcam_deploy.runtime import Localizer
    loc = Localizer.load("model.onnx")                  # backend="auto": ONNX Runtime for .onnx
    pred = loc.predict(PIL.Image.open("bird.jpg"))      # one image -> one Prediction
    preds = loc.predict([img_a, img_b])                  # a list -> a list
    pred.class_name, pred.score, pred.boxes, pred.map.shape == (h, w)

Preprocessing comes from the model's metadata: the image is converted to RGB uint8 and resized straight to the
model's input size with PIL bilinear (the evaluation transform); normalisation runs inside the graph. Outputs are
brought back to the original image size: the map bilinearly (half-pixel centres), the mask as
``map > tau * max`` (max of the model-size map, the post-processing op's rule), and the boxes (computed at model
size like the op) scaled to original pixels.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, overload

import numpy as np

from fcam_deploy.errors import ConfigError, InputError, ModelFormatError
from fcam_deploy.runtime.base import BACKENDS, ModelMetadata, Runner

__all__ = ["Box", "ImageLike", "Localizer", "Prediction", "boxes_from_mask", "detect_model_kind", "to_rgb_uint8"]

log = logging.getLogger(__name__)

ImageLike = Any  # PIL.Image.Image | np.ndarray (H, W, 3) uint8 | torch.Tensor (3, H, W)

_PLAN_SUFFIXES = (".plan", ".engine", ".trt")
_PIL_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr", "1")


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
        mask: ``(h, w)`` bool, ``map > tau * max(map at model size)`` (the op's rule, kernels/README.md).
        boxes: boxes of the model-size mask's 8-connected components (largest first), scaled to original
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


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Any supported image -> C-contiguous uint8 ``(H, W, 3)`` RGB.

    Accepts a PIL image (converted to RGB), a NumPy uint8 ``(H, W, 3)`` array, or a torch tensor ``(3, H, W)``
    (uint8, or floating in [0, 1], rounded to uint8).

    Raises:
        InputError: wrong type, dtype, shape, channel count, empty, non-finite or out-of-range values.
    """
    import torch
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in _PIL_MODES:
            raise InputError(f"PIL image mode {image.mode!r} is not supported (convert to RGB first)")
        if image.width == 0 or image.height == 0:
            raise InputError(f"empty image ({image.width}x{image.height})")
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise InputError(f"NumPy images must be uint8 (H, W, 3) RGB, got dtype {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"NumPy images must be (H, W, 3) RGB, got shape {image.shape} (fix: for gray use "
                "np.repeat(a[..., None], 3, -1); for RGBA drop the alpha channel)"
            )
        arr = image
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise InputError(f"tensor images must be (3, H, W), got shape {tuple(image.shape)}")
        t = image.detach().to("cpu")
        if t.dtype == torch.uint8:
            arr = t.permute(1, 2, 0).numpy()
        elif t.is_floating_point():
            if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.min()) < 0.0 or float(t.max()) > 1.0):
                raise InputError("floating tensor images must be finite and in [0, 1] (un-normalised RGB)")
            arr = (t.to(torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        else:
            raise InputError(f"tensor images must be uint8 or floating in [0, 1], got {t.dtype}")
    else:
        raise InputError(
            f"unsupported image type {type(image).__name__} (use a PIL image, a uint8 (H, W, 3) array or a "
            "(3, H, W) tensor)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _resize_uint8(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    return np.asarray(Image.fromarray(arr, mode="RGB").resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def boxes_from_mask(mask: np.ndarray, max_boxes: int) -> list[Box]:
    """Boxes of the 8-connected components of a binary ``(H, W)`` mask, ranked like
    ``fcam_deploy.ops.cam_postprocess`` (non-protocol mode): pixel count descending, then the component whose
    first pixel in raster order comes first; at most ``max_boxes``; inclusive pixel coordinates.

    (OpenCV's labelling gives the same components as the op's 8-connected labelling; only the order is ours.)
    """
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
    present, first_at = np.unique(labels.ravel(), return_index=True)
    first = np.zeros(n, dtype=np.int64)  # label -> first raster index (label 0, background, may be absent)
    first[present] = first_at
    order = sorted(range(1, n), key=lambda c: (-int(stats[c, cv2.CC_STAT_AREA]), int(first[c])))
    boxes = []
    for c in order[:max_boxes]:
        x, y, w, h = (int(v) for v in stats[c, :4])
        boxes.append(Box(x, y, x + w - 1, y + h - 1))
    return boxes


def _scale_box(b: Box, in_size: tuple[int, int], out_size: tuple[int, int]) -> Box:
    (hi, wi), (ho, wo) = in_size, out_size
    sx, sy = wo / wi, ho / hi
    x0 = min(wo - 1, int(math.floor(b.x0 * sx)))
    y0 = min(ho - 1, int(math.floor(b.y0 * sy)))
    x1 = max(x0, min(wo - 1, int(math.ceil((b.x1 + 1) * sx)) - 1))
    y1 = max(y0, min(ho - 1, int(math.ceil((b.y1 + 1) * sy)) - 1))
    return Box(x0, y0, x1, y1)


class Localizer:
    """One model on one backend; :meth:`predict` is thread-safe and keeps no per-call state.

    Build it with :meth:`load`.
    """

    def __init__(self, runner: Runner, max_boxes: int = 8, batch_size: int = 16) -> None:
        if max_boxes < 1 or batch_size < 1:
            raise ConfigError(f"max_boxes and batch_size must be >= 1, got {max_boxes}, {batch_size}")
        self._runner = runner
        self._max_boxes = int(max_boxes)
        self._batch_size = int(batch_size) if runner.metadata.dynamic_batch else 1
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
            max_boxes: boxes kept per image when the graph has no boxes output.
            batch_size: images per runner call.
            threads: ONNX Runtime intra-op threads (0 = its default).

        Raises:
            ModelFormatError: the file is of another kind than the backend takes, or of another format version.
            BackendUnavailableError: the backend, its device or a plugin library is missing.
            ConfigError: unknown backend.
        """
        path = Path(path)
        if backend not in ("auto", *BACKENDS):
            raise ConfigError(f"backend must be one of auto, {', '.join(BACKENDS)}; got {backend!r}")
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
        runner: Runner
        if backend == "torch":
            from fcam_deploy.runtime.torch_runner import TorchRunner

            runner = TorchRunner(path, device=device, method=method, postprocess=postprocess, max_boxes=max_boxes)
        elif backend == "onnxruntime":
            from fcam_deploy.runtime.ort import OrtRunner

            runner = OrtRunner(path, device=device, plugin_library=plugin_library, threads=threads)
        else:
            from fcam_deploy.runtime import tensorrt as trt_runtime

            trt_device = device if device.startswith("cuda") else "cuda:0"
            runner = trt_runtime.open_runner(path, device=trt_device, plugin_library=plugin_library)
        return cls(runner, max_boxes=max_boxes, batch_size=batch_size)

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
    def providers(self) -> tuple[str, ...]:
        """What actually executes the graph (e.g. ORT's ``get_providers()``)."""
        return self._runner.providers

    @property
    def fell_back_to_cpu(self) -> bool:
        """True when a GPU was requested but the model runs on the CPU (a warning was logged at load)."""
        return self._runner.fell_back_to_cpu

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Localizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def preprocess(self, images: Sequence[ImageLike]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Images -> (uint8 (N, H, W, 3) batch at the model size, original (h, w) of each)."""
        size = self.metadata.input_size
        arrays, sizes = [], []
        for i, img in enumerate(images):
            try:
                arr = to_rgb_uint8(img)
            except InputError as exc:
                raise InputError(f"image {i}: {exc}") from exc
            sizes.append((int(arr.shape[0]), int(arr.shape[1])))
            arrays.append(_resize_uint8(arr, size))
        return np.stack(arrays), sizes

    @overload
    def predict(self, images: Sequence[ImageLike]) -> list[Prediction]: ...

    @overload
    def predict(self, images: ImageLike) -> Prediction: ...

    def predict(self, images: Any) -> Prediction | list[Prediction]:
        """Localize one image (-> :class:`Prediction`) or a list/tuple of images (-> list of them).

        A 4-D tensor ``(N, 3, H, W)`` counts as a list of N images. See :func:`to_rgb_uint8` for image types.

        Raises:
            InputError: an image is unusable (the message names its index).
        """
        import torch

        single = not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.ndim == 4)
        batch = [images] if single else list(images)
        if not batch:
            return []
        out: list[Prediction] = []
        for start in range(0, len(batch), self._batch_size):
            chunk = batch[start : start + self._batch_size]
            x, sizes = self.preprocess(chunk)
            if self._lock is None:
                raw = self._runner.run(x)
            else:
                with self._lock:
                    raw = self._runner.run(x)
            out.extend(self._postprocess(raw, i, sizes[i]) for i in range(len(chunk)))
        return out[0] if single else out

    def _postprocess(self, raw: dict[str, np.ndarray], i: int, size: tuple[int, int]) -> Prediction:
        import torch

        meta = self.metadata
        logits = np.asarray(raw["logits"][i], dtype=np.float32)
        cls_idx = int(raw["pred_class"][i])
        z = logits.astype(np.float64) - float(logits.max())
        score = float(np.exp(z[cls_idx]) / np.exp(z).sum())
        map_in = np.asarray(raw["map"][i], dtype=np.float32)
        if "boxes" in raw:
            count = int(raw["box_count"][i])
            boxes_in = [Box(*(int(v) for v in row)) for row in raw["boxes"][i][:count]]
        else:
            thr = np.float32(meta.tau) * np.float32(map_in.max())
            mask_in = raw["mask"][i] if "mask" in raw else (map_in > thr)
            boxes_in = boxes_from_mask(np.asarray(mask_in), self._max_boxes)
        if size == meta.input_size:
            full = map_in.copy()
        else:
            t = torch.from_numpy(map_in)[None, None]
            full = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
            full = full[0, 0].clamp_(0.0, 1.0).numpy()
        boxes = tuple(_scale_box(b, meta.input_size, size) for b in boxes_in)
        return Prediction(
            class_index=cls_idx,
            class_name=meta.class_names[cls_idx] if 0 <= cls_idx < meta.num_classes else str(cls_idx),
            score=score,
            logits=logits.copy(),
            map=full,
            mask=full > np.float32(meta.tau) * np.float32(map_in.max()),
            boxes=boxes,
            tau=meta.tau,
            size=size,
            backend=self.backend,
        )

    def describe(self) -> str:
        """One-line JSON description (backend, providers, fallback, metadata)."""
        return json.dumps(
            {
                "backend": self.backend,
                "providers": list(self.providers),
                "fell_back_to_cpu": self.fell_back_to_cpu,
                "method": self.metadata.method,
                "postprocess": self.metadata.postprocess,
                "input_size": list(self.metadata.input_size),
                "tau": self.metadata.tau,
            }
        )
