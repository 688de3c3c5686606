"""Fixtures for the runtime tests: tiny seeded models and ONNX graphs exported once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from _runtime_helpers import export_to, tiny_models


@pytest.fixture(scope="session")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return tiny_models()


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, models) -> Callable[..., Path]:
    """``onnx_model(method, postprocess, size=SIZE) -> Path``, exported once per session."""
    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("rt_onnx")

    def _get(method: str, postprocess: str, size: tuple[int, int] | None = None) -> Path:
        from _runtime_helpers import SIZE

        size = size or SIZE
        key = (method, postprocess, size)
        if key not in cache:
            clf, fcam = models
            cache[key] = export_to(root / f"{method}_{postprocess}_{size[0]}x{size[1]}.onnx",
                                   fcam if method == "fcam" else clf, method, postprocess, size)
        return cache[key]

    return _get


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, models) -> Path:
    """F-CAM checkpoint of the tiny model (what ``Localizer.load`` takes for the torch backend)."""
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint

    from _runtime_helpers import CLASS_NAMES, MEAN, SIZE, STD, TAU

    _, fcam = models
    out = tmp_path_factory.mktemp("rt_ckpt") / "fcam"
    save_checkpoint(out, fcam, CheckpointMeta(arch="resnet18_s8", num_classes=len(CLASS_NAMES),
                                              class_names=list(CLASS_NAMES), input_size=SIZE, mean=MEAN, std=STD,
                                              threshold=TAU, kind="fcam"))
    return out
