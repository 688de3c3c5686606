"""The ``torch`` backend: a checkpoint directory run eagerly through the same graph module ``fcam export`` traces."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fcam_deploy.errors import BackendUnavailableError, ConfigError
from fcam_deploy.runtime.base import GraphOutputs, ModelMetadata, check_runner_input

if TYPE_CHECKING:
    from fcam_deploy.runtime.torch_graph import LocalizationGraph

__all__ = ["TorchRunner"]


class TorchRunner:
    """Runs :class:`fcam_deploy.runtime.torch_graph.LocalizationGraph` in PyTorch (implements ``Runner``).

    Args:
        checkpoint: checkpoint directory.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        method: map method (default ``fcam`` for an F-CAM checkpoint, ``cam`` for a classifier).
        postprocess: ``none | onnx | custom-op`` (``custom-op`` calls ``fcam_deploy.ops.cam_postprocess``).
        size: ``(H, W)`` input size; default the checkpoint's.
        max_boxes: rows of ``boxes`` for ``custom-op``.

    Raises:
        CheckpointError: unreadable checkpoint. BackendUnavailableError: CUDA requested but absent.
    """

    backend = "torch"
    thread_safe = True

    def __init__(
        self,
        checkpoint: Path,
        device: str = "cpu",
        method: str | None = None,
        postprocess: str = "onnx",
        size: tuple[int, int] | None = None,
        max_boxes: int = 8,
    ) -> None:
        from fcam_deploy.runtime.torch_graph import build_graph

        dev = _torch_device(device)
        graph, meta = build_graph(Path(checkpoint), method, postprocess, size, max_boxes)
        self._graph = graph.to(dev).eval()
        self._meta = meta
        self._device = dev
        self._closed = threading.Event()

    @classmethod
    def from_graph(cls, graph: LocalizationGraph, metadata: ModelMetadata, device: str = "cpu") -> TorchRunner:
        """Wrap an in-memory :class:`~fcam_deploy.runtime.torch_graph.LocalizationGraph` and its metadata."""
        self = cls.__new__(cls)
        dev = _torch_device(device)
        self._graph = graph.to(dev).eval()
        self._meta = metadata
        self._device = dev
        self._closed = threading.Event()
        return self

    @property
    def metadata(self) -> ModelMetadata:
        return self._meta

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"torch:{self._device}",)

    @property
    def fell_back_to_cpu(self) -> bool:
        return False

    @property
    def graph(self) -> torch.nn.Module:
        """The eager graph module (read-only use)."""
        return self._graph

    def run(self, images: np.ndarray) -> GraphOutputs:
        """See ``Runner.run``: uint8 (N, H, W, 3) -> dict of host arrays."""
        if self._closed.is_set():
            raise RuntimeError("TorchRunner.run after close()")
        images = check_runner_input(images, self._meta)
        x = torch.from_numpy(images.copy()).to(self._device)
        with torch.inference_mode():
            outs = self._graph(x)
        return {
            name: t.detach().to("cpu").numpy().copy() for name, t in zip(self._meta.output_names, outs, strict=True)
        }

    def close(self) -> None:
        self._closed.set()


def _torch_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device {device!r} is not a torch device string (use 'cpu' or 'cuda:N')") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {device!r} requested but torch sees no CUDA GPU (fix: use device='cpu', or install a CUDA "
            "build of torch on a machine with an NVIDIA driver)"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device type {dev.type!r} is not supported (use 'cpu' or 'cuda:N')")
    return dev
