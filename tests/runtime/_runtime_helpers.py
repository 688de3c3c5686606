"""Shared constants and builders of the runtime tests (a uniquely named module, imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SIZE = (40, 40)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("dot", "ring", "bar_across")
TAU = 0.35


def tiny_models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(classifier, fcam) on the ResNet18-s8 demo trunk, random seeded weights, eval mode."""
    from fcam_deploy.models import FCAM, build_classifier

    torch.manual_seed(seed)
    clf = build_classifier("resnet18_s8", num_classes=len(CLASS_NAMES)).eval()
    fcam = FCAM(clf).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)  # give the random decoder's map some contrast
    return clf, fcam


def meta_for(method: str, postprocess: str, size: tuple[int, int] = SIZE, max_boxes: int = 4) -> object:
    from fcam_deploy.runtime.base import ModelMetadata

    return ModelMetadata(
        class_names=CLASS_NAMES,
        input_size=size,
        mean=MEAN,
        std=STD,
        tau=TAU,
        method=method,
        postprocess=postprocess,
        max_boxes=max_boxes if postprocess == "custom-op" else 0,
        arch="resnet18_s8",
        fcam_deploy_version="test",
    )


def graph_for(model: torch.nn.Module, method: str, postprocess: str, size: tuple[int, int] = SIZE) -> object:
    from fcam_deploy.export.graph import LocalizationGraph

    return LocalizationGraph(model, method, postprocess, size, MEAN, STD, TAU, max_boxes=4)


def export_to(path: Path, model: torch.nn.Module, method: str, postprocess: str,
              size: tuple[int, int] = SIZE) -> Path:
    from fcam_deploy.export.onnx_export import export_graph

    export_graph(graph_for(model, method, postprocess, size), meta_for(method, postprocess, size), path)
    return path


def blob_image(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 (h, w, 3) RGB: a smooth background with one bright ellipse (so maps and boxes have structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img = np.empty((h, w, 3), dtype=np.float64)
    img[...] = rng.uniform(40, 120, size=3)
    img += rng.normal(0, 8, size=(h, w, 3))
    img[inside] = rng.uniform(150, 255, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)
