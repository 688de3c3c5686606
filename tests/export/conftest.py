"""Fixtures for the export tests: tiny seeded models (no downloads), a tiny synthetic split, exported graphs.

Exports are the slow part (torch.onnx dynamo, ~5-10 s each on 2 cores), so graphs are exported once per session
and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from _export_helpers import CLASS_NAMES, MEAN, SIZE, STD, TAU, make_meta


@pytest.fixture(scope="session")
def tiny_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(classifier, fcam): ResNet18-s8 trunk (the smallest table backbone), random seeded weights, eval mode."""
    from fcam_deploy.models import FCAM, build_classifier

    torch.manual_seed(0)
    clf = build_classifier("resnet18_s8", num_classes=len(CLASS_NAMES)).eval()
    fcam = FCAM(clf).eval()
    # make the decoder output non-trivial so the F-CAM map has structure (random init is near 0.5 everywhere)
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)
    return clf, fcam


@pytest.fixture(scope="session")
def make_graph(tiny_models: tuple[torch.nn.Module, torch.nn.Module]) -> Callable[..., object]:
    from fcam_deploy.export.graph import LocalizationGraph

    def _make(method: str, postprocess: str = "onnx", max_boxes: int = 4) -> LocalizationGraph:
        clf, fcam = tiny_models
        model = fcam if method == "fcam" else clf
        return LocalizationGraph(model, method, postprocess, SIZE, MEAN, STD, TAU, max_boxes=max_boxes)

    return _make


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, make_graph: Callable[..., object]) -> Callable[..., Path]:
    """``exported(method, postprocess, dynamic_batch=True) -> Path``, cached for the session."""
    from fcam_deploy.export.onnx_export import export_graph

    cache: dict[tuple[str, str, bool], Path] = {}
    root = tmp_path_factory.mktemp("onnx")

    def _get(method: str, postprocess: str, dynamic_batch: bool = True) -> Path:
        key = (method, postprocess, dynamic_batch)
        if key not in cache:
            out = root / f"{method}_{postprocess}_{int(dynamic_batch)}.onnx"
            export_graph(make_graph(method, postprocess), make_meta(method, postprocess), out,
                         dynamic_batch=dynamic_batch)
            cache[key] = out
        return cache[key]

    return _get


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models) -> Path:
    """An F-CAM checkpoint directory of the tiny model (threshold 0.42 recorded as validation-optimal)."""
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint

    _, fcam = tiny_models
    out = tmp_path_factory.mktemp("ckpt") / "fcam"
    meta = CheckpointMeta(arch="resnet18_s8", num_classes=len(CLASS_NAMES), class_names=list(CLASS_NAMES),
                          input_size=SIZE, mean=MEAN, std=STD, threshold=0.42, kind="fcam")
    save_checkpoint(out, fcam, meta)
    return out


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic WSOL set (test split only, 10 images of 64 px, boxes + masks)."""
    from fcam_deploy.data import SynthConfig, generate_synthetic

    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(size=64, num_classes=len(CLASS_NAMES)), counts={"test": 10}, seed=3,
                       overwrite=True)
    return out
