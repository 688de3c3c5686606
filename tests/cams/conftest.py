"""Fixtures of the CAM tests (models in ``_models.py``)."""

from __future__ import annotations

import pytest
from torch import Tensor

from ._models import TinyCAMNet, make_images, make_model


@pytest.fixture
def model() -> TinyCAMNet:
    return make_model()


@pytest.fixture
def images() -> Tensor:
    return make_images()
