"""Suite-wide hooks and fixtures.

* The ``native_build`` mark: skip when a native build is missing, fail under ``FCAM_REQUIRE_KERNELS=1``
  (``tests/_support/native.py``).
* Tiny seeded models and ONNX graphs exported once per session (exports are the slow part), shared by the runtime
  and reliability tests. ``tests/export`` has its own 48-px fixtures (its ``checkpoint_dir`` overrides this one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._support.native import skip_or_fail


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("native_build"):
        if not mark.kwargs.get("available", False):
            skip_or_fail(str(mark.kwargs.get("reason", "a native build is missing")))


@pytest.fixture(scope="session")
def models() -> tuple[Any, Any]:
    """(classifier, fcam) of ``tests._support.models.tiny_models`` (seed 0)."""
    from tests._support.models import tiny_models

    return tiny_models()


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, models: tuple[Any, Any]) -> Callable[..., Path]:
    """``onnx_model(method, postprocess, size=RUNTIME_SIZE) -> Path``, exported once per session."""
    from tests._support.models import RUNTIME_SIZE, export_to

    cache: dict[tuple[str, str, tuple[int, int]], Path] = {}
    root = tmp_path_factory.mktemp("rt_onnx")

    def _get(method: str, postprocess: str, size: tuple[int, int] | None = None) -> Path:
        size = size or RUNTIME_SIZE
        key = (method, postprocess, size)
        if key not in cache:
            clf, fcam = models
            cache[key] = export_to(
                root / f"{method}_{postprocess}_{size[0]}x{size[1]}.onnx",
                fcam if method == "fcam" else clf,
                method,
                postprocess,
                size,
            )
        return cache[key]

    return _get


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, models: tuple[Any, Any]) -> Path:
    """F-CAM checkpoint of the tiny model at RUNTIME_SIZE (what ``Localizer.load`` takes for the torch backend)."""
    from tests._support.models import RUNTIME_SIZE, TAU, save_tiny_checkpoint

    _, fcam = models
    return save_tiny_checkpoint(tmp_path_factory.mktemp("rt_ckpt") / "fcam", fcam, RUNTIME_SIZE, TAU)
