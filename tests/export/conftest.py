"""Fixtures for the export tests: tiny seeded models (no downloads), a tiny synthetic split, exported graphs.

Exports are the slow part (torch.onnx dynamo, ~5-10 s each on 2 cores), so graphs are exported once per session
and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests._support import models as support
from tests._support.models import CLASS_NAMES, EXPORT_SIZE


@pytest.fixture(scope="session")
def tiny_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(classifier, fcam): ResNet18-s8 trunk (the smallest table backbone), random seeded weights, eval mode."""
    return support.tiny_models(seed=0)


@pytest.fixture(scope="session")
def make_graph(tiny_models: tuple[torch.nn.Module, torch.nn.Module]) -> Callable[..., object]:
    def _make(method: str, postprocess: str = "onnx", max_boxes: int = 4) -> object:
        clf, fcam = tiny_models
        return support.graph_for(fcam if method == "fcam" else clf, method, postprocess, EXPORT_SIZE, max_boxes)

    return _make


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_models) -> Callable[..., Path]:
    """``exported(method, postprocess, dynamic_batch=True) -> Path``, cached for the session."""
    cache: dict[tuple[str, str, bool], Path] = {}
    root = tmp_path_factory.mktemp("onnx")

    def _get(method: str, postprocess: str, dynamic_batch: bool = True) -> Path:
        key = (method, postprocess, dynamic_batch)
        if key not in cache:
            clf, fcam = tiny_models
            cache[key] = support.export_to(
                root / f"{method}_{postprocess}_{int(dynamic_batch)}.onnx",
                fcam if method == "fcam" else clf,
                method,
                postprocess,
                EXPORT_SIZE,
                dynamic_batch=dynamic_batch,
            )
        return cache[key]

    return _get


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models) -> Path:
    """An F-CAM checkpoint directory of the tiny model (threshold 0.42 recorded as validation-optimal)."""
    _, fcam = tiny_models
    return support.save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "fcam", fcam, EXPORT_SIZE, 0.42)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic WSOL set (test split only, 10 images of 64 px, boxes + masks)."""
    from fcam_deploy.data import SynthConfig, generate_synthetic

    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(
        out, SynthConfig(size=64, num_classes=len(CLASS_NAMES)), counts={"test": 10}, seed=3, overwrite=True
    )
    return out
