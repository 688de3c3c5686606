from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data" / "wsolevaluation"


@pytest.fixture(scope="session")
def wsol_data() -> Path:
    return DATA
