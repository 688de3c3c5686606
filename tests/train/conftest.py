"""Shared fixtures: a tiny synthetic WSOL set written by the real generator."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fcam_deploy.data import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("tiny_synth")
    generate_synthetic(root, SynthConfig(size=32, num_classes=3), {"train": 48, "val": 12, "test": 12}, seed=3)
    return root
