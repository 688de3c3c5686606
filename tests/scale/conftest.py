"""Fixtures for the scale tests: one local Ray cluster (2 CPUs) for the whole session, a tiny exported model,
a synthetic image folder with a few bad files, and the in-process reference predictions."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scale._scale_helpers import export_tiny_model, reference_rows, write_image_set


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny F-CAM ONNX graph (ResNet18-s8 trunk, random seeded weights, 40 x 40 input, in-graph post-processing)."""
    return export_tiny_model(tmp_path_factory.mktemp("scale_model") / "tiny_fcam.onnx")


@pytest.fixture(scope="session")
def other_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model (other seed) for the "rows of another model" checks."""
    return export_tiny_model(tmp_path_factory.mktemp("scale_model2") / "other.onnx", seed=1)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 synthetic PNGs (48 px) + 24 images of other sizes and formats + 3 bad files (see write_image_set)."""
    return write_image_set(tmp_path_factory.mktemp("scale_images") / "images", n_synth=300)


@pytest.fixture(scope="session")
def reference(tiny_onnx: Path, image_dir: Path) -> dict[str, dict[str, Any]]:
    """Expected row of every image, from ``Localizer.predict`` on one image at a time in this process."""
    return reference_rows(tiny_onnx, image_dir)


@pytest.fixture
def fresh_dir(tmp_path: Path, image_dir: Path) -> Path:
    """A private copy of the image folder (tests that edit images)."""
    dest = tmp_path / "images"
    shutil.copytree(image_dir, dest)
    return dest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster (2 CPUs, no dashboard) shared by every test that needs Ray; shut down at the end."""
    ray = pytest.importorskip("ray", reason="the scale extra (ray) is not installed")
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    if ray.is_initialized():  # pragma: no cover - another plugin started one
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
