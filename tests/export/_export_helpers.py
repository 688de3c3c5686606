"""Shared constants and helpers of the export tests (a uniquely named module, imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import torch

SIZE = (48, 48)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("dot", "ring", "bar_across")
TAU = 0.35


def make_meta(method: str, postprocess: str, max_boxes: int = 4) -> object:
    from fcam_deploy.runtime.base import ModelMetadata

    return ModelMetadata(
        class_names=CLASS_NAMES,
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        tau=TAU,
        method=method,
        postprocess=postprocess,
        max_boxes=max_boxes if postprocess == "custom-op" else 0,
        arch="resnet18_s8",
        fcam_deploy_version="test",
    )


def ort_ops_library() -> Path | None:
    """The built custom-op library, or None (tests needing it skip)."""
    from fcam_deploy.errors import BackendUnavailableError
    from fcam_deploy.runtime.ort import resolve_ort_ops_library

    try:
        return resolve_ort_ops_library()
    except BackendUnavailableError:
        return None


def smooth_images(n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> torch.Tensor:
    """uint8 (n, H, W, 3) images with structure (low-res noise upsampled), seeded."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 6, 6), generator=g).float()
    up = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
