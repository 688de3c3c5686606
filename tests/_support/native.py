"""Tests that need a native build (the torch extension, the pybind11 module, the ONNX Runtime custom-op library,
the launcher test binary) skip when it is missing, with the reason; under ``FCAM_REQUIRE_KERNELS=1`` (what
``make test`` and CI set, after building them) the same test fails instead, so a broken build cannot pass CI by
skipping. GPU-only tests (no CUDA device here) are not affected: they keep skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["REQUIRE_ENV", "needs_native", "required", "skip_or_fail"]

#: Environment variable that turns "native build missing" skips into failures.
REQUIRE_ENV = "FCAM_REQUIRE_KERNELS"


def required() -> bool:
    """Whether ``FCAM_REQUIRE_KERNELS=1``."""
    return os.environ.get(REQUIRE_ENV) == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the running test for ``reason``, or fail it when native builds are required."""
    if required():
        pytest.fail(f"native build required ({REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def needs_native(available: bool, reason: str) -> pytest.MarkDecorator:
    """Mark a test (or ``pytestmark`` a module) that needs a native build; ``tests/conftest.py`` applies it."""
    return pytest.mark.native_build(available=bool(available), reason=reason)
