"""Fixtures of the C++ embedding tests (export/cpp): the build, test images and exported models.

The builds need cmake, a C++17 compiler, libpng/libjpeg headers and npm (or cached ORT headers). Without them the
tests skip, unless FCAM_REQUIRE_CPP=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CPP = REPO / "export" / "cpp"
BUILD = Path(os.environ.get("FCAM_CPP_BUILD", CPP / "build"))
BUILD_ASAN = Path(os.environ.get("FCAM_CPP_BUILD_ASAN", CPP / "build-asan"))


def unavailable(reason: str) -> None:
    """Skip, or fail under FCAM_REQUIRE_CPP=1."""
    if os.environ.get("FCAM_REQUIRE_CPP") == "1":
        pytest.fail(f"C++ build required (FCAM_REQUIRE_CPP=1) but {reason}")
    pytest.skip(reason)


def build_cpp(build: Path, **env: str) -> Path:
    """Run export/cpp/build.sh into ``build``; return its install folder (skips when the toolchain is missing)."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not found")
    full_env = dict(os.environ, PYTHON=sys.executable, FCAM_CPP_BUILD=str(build), **env)
    proc = subprocess.run(
        ["bash", str(CPP / "build.sh")],
        env=full_env,
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        if "npm is needed" in tail:
            unavailable("npm missing and no cached ONNX Runtime headers")
        if "Could NOT find PNG" in tail or "Could NOT find JPEG" in tail:
            unavailable("libpng/libjpeg development files missing (apt-get install libpng-dev libjpeg-dev)")
        pytest.fail(f"export/cpp/build.sh failed:\n{tail}")
    assert (build / "install" / "bin" / "fcam_localize").is_file()
    return build / "install"


@pytest.fixture(scope="session")
def install_dir() -> Path:
    return build_cpp(BUILD)


@pytest.fixture(scope="session")
def asan_install_dir() -> Path:
    """The library and app built with AddressSanitizer + UndefinedBehaviorSanitizer (-O1)."""
    return build_cpp(BUILD_ASAN, FCAM_CPP_SANITIZE="1", CMAKE_BUILD_TYPE="RelWithDebInfo")


@dataclass
class CppRun:
    """One ``fcam_localize --json --save-maps`` run: the process, its JSON lines, and the saved maps/masks."""

    proc: subprocess.CompletedProcess[str]
    results: list[dict[str, Any]]
    maps: list[np.ndarray]
    masks: list[np.ndarray]


def localize(
    install: Path,
    model: Path,
    images: list[Path],
    *extra: str,
    env: dict[str, str] | None = None,
    app: Path | None = None,
    prefix: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    exe = app or install / "bin" / "fcam_localize"
    return subprocess.run(
        [*prefix, str(exe), *extra, str(model), *map(str, images)],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        env=env,
    )


def localize_json(
    install: Path,
    model: Path,
    images: list[Path],
    save: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    app: Path | None = None,
    prefix: tuple[str, ...] = (),
) -> CppRun:
    """Run the app with --json --save-maps into ``save`` and load everything it wrote (all images must succeed)."""
    save.mkdir(parents=True, exist_ok=True)
    proc = localize(
        install,
        model,
        images,
        "--json",
        "--save-maps",
        str(save),
        *extra,
        env=env,
        app=app,
        prefix=prefix,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(results) == len(images)
    maps = [np.load(save / f"{i}_map.npy") for i in range(len(images))]
    masks = [np.load(save / f"{i}_mask.npy") for i in range(len(images))]
    return CppRun(proc, results, maps, masks)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """PNG/JPEG files of several sizes and modes: exact model size, up- and down-scaling, shapes whose resize runs
    the vertical pass first (Pillow >= 13), one-pixel rows, gray, RGBA, palette, JPEG colour and gray."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cpp_images")
    rng = np.random.default_rng(0)
    out = []
    sizes = [
        (32, 32),
        (64, 64),
        (50, 77),
        (20, 15),
        (200, 130),
        (1, 9),
        (120, 40),
        (333, 90),
    ]
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        img = (
            np.stack(
                [
                    128 + 100 * np.sin(xx / 7 + i),
                    128 + 100 * np.cos(yy / 5 + i),
                    rng.integers(0, 256, (h, w)),
                ],
                -1,
            )
            .clip(0, 255)
            .astype(np.uint8)
        )
        p = root / f"rgb{i}_{h}x{w}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    base = Image.open(out[4])
    for mode in ("L", "RGBA", "P"):
        p = root / f"mode_{mode}.png"
        base.convert(mode).save(p)
        out.append(p)
    p = root / "photo.jpg"
    base.save(p, quality=90)
    out.append(p)
    p = root / "gray.jpg"
    base.convert("L").save(p, quality=85)
    out.append(p)
    return out


@pytest.fixture(scope="session")
def probe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32x32 probe graph (3x3 conv + CAM head, standard ops, postprocess 'onnx')."""
    from fcam_deploy.export.probe import write_probe_onnx

    return write_probe_onnx(tmp_path_factory.mktemp("cpp_probe") / "probe.onnx")


@pytest.fixture(scope="session")
def exported_fcam(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``exported(postprocess) -> Path``: an F-CAM graph from the real exporter (ResNet18-s8 trunk, random weights)."""
    import torch

    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.export.onnx_export import export_graph
    from fcam_deploy.models import FCAM, build_classifier
    from fcam_deploy.runtime.base import ModelMetadata

    torch.manual_seed(0)
    clf = build_classifier("resnet18_s8", num_classes=3).eval()
    fcam = FCAM(clf).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)  # give the random decoder's map structure
    root = tmp_path_factory.mktemp("cpp_models")
    cache: dict[str, Path] = {}

    def _get(postprocess: str) -> Path:
        if postprocess not in cache:
            mean, std, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (64, 64)
            meta = ModelMetadata(
                class_names=("cat", "dog", "bird"),
                input_size=size,
                mean=mean,
                std=std,
                tau=0.4,
                method="fcam",
                postprocess=postprocess,
                max_boxes=4 if postprocess == "custom-op" else 0,
            )
            graph = LocalizationGraph(fcam, "fcam", postprocess, size, mean, std, 0.4, max_boxes=4)
            out = root / f"fcam_{postprocess}.onnx"
            export_graph(graph, meta, out)
            cache[postprocess] = out
        return cache[postprocess]

    return _get


@pytest.fixture(scope="session")
def consumer(install_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/cpp/consumer (a downstream project that only uses find_package(fcam_localizer))."""
    build = tmp_path_factory.mktemp("consumer")
    cfg = subprocess.run(
        [
            "cmake",
            "-S",
            str(Path(__file__).parent / "consumer"),
            "-B",
            str(build),
            f"-DCMAKE_PREFIX_PATH={install_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = subprocess.run(
        ["cmake", "--build", str(build)],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert bld.returncode == 0, bld.stdout + bld.stderr
    return build


@pytest.fixture(scope="session")
def cpp_tools() -> Any:
    """The helpers above for the test modules (``localize``, ``localize_json``, ``build``, ``unavailable``)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        localize=localize,
        localize_json=localize_json,
        build=build_cpp,
        unavailable=unavailable,
        repo=REPO,
        cpp=CPP,
    )
