"""Shared inputs of the reliability suite: a tiny synthetic WSOL set, a complete `fcam eval --save-maps` folder,
a photo, and the session's exported model / checkpoint (``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wsol_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic set (3 classes, 64 px): train 8, test 4 images, boxes + masks."""
    from fcam_deploy.data import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("rel_set")
    generate_synthetic(root, SynthConfig(size=64, num_classes=3), {"train": 8, "val": 0, "test": 4}, seed=5)
    return root


@pytest.fixture(scope="session")
def eval_maps(tmp_path_factory: pytest.TempPathFactory, wsol_set: Path, checkpoint_dir: Path) -> Path:
    """A complete maps folder (method cam) written by `fcam eval --save-maps` on the test split."""
    from fcam_deploy.cli import main

    root = tmp_path_factory.mktemp("rel_maps")
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(checkpoint_dir),
            "--data",
            str(wsol_set),
            "--split",
            "test",
            "--method",
            "cam",
            "--json",
            str(root / "eval.json"),
            "--save-maps",
            str(root / "maps"),
            "--no-progress",
        ]
    )
    assert rc == 0
    return root / "maps"


@pytest.fixture(scope="session")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    from tests._support.models import blob_image

    path = tmp_path_factory.mktemp("rel_photo") / "photo.png"
    Image.fromarray(blob_image(60, 80, 4)).save(path)
    return path
