"""The lean install: the wheel holds the compiled core, and `pip install <wheel>` with no extras (numpy, pillow,
onnxruntime) runs an exported model through the CLI and the Python API without torch, natively, with the same
results as the full install.

Builds the wheel once (`pip wheel --no-build-isolation`), installs it into a fresh venv with no extras, then runs
`fcam predict` and a probe script there. Needs pip to reach the package index the project uses (a local one here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HEAVY_DISTS = {
    "torch",
    "torchvision",
    "scipy",
    "opencv-python-headless",
    "matplotlib",
    "numba",
    "polygraphy",
    "scikit-image",
    "timm",
    "onnx",
    "safetensors",
}

PROBE = r"""
import json, sys
import numpy as np
from PIL import Image
from fcam_deploy.runtime import Localizer
from fcam_deploy.runtime.postprocess import native_postprocess
from fcam_deploy.ops import native_cpu_available
model, image, out = sys.argv[1:4]
loc = Localizer.load(model)
pred = loc.predict(Image.open(image).convert("RGB"))
np.savez(out, map=pred.map, mask=pred.mask, logits=pred.logits)
print(json.dumps({
    "torch_imported": "torch" in sys.modules,
    "heavy_imported": sorted(m for m in ("torch", "cv2", "scipy", "matplotlib", "onnx", "numba") if m in sys.modules),
    "native": loc.postprocessor is native_postprocess,
    "core": native_cpu_available()[1],
    "class_index": pred.class_index, "score": pred.score, "boxes": [list(b) for b in pred.boxes],
}))
"""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        cwd=out,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("fcam_deploy-*.whl")
    return whl


@pytest.fixture(scope="module")
def lean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("lean") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    # the same versions as the full install (constraints pin, they do not add packages)
    # without PYTHONPATH: a source tree on it (with the fcam_deploy.egg-info a wheel build leaves) makes pip take
    # the package as installed already and skip the wheel
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = _run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "-c",
            str(REPO / "constraints.txt"),
            str(wheel),
        ],
        env=clean,
    )
    if res.returncode != 0 and ("No matching distribution" in res.stderr or "Could not find" in res.stderr):
        pytest.skip(f"pip cannot reach a package index for the lean dependencies: {res.stderr.strip()[-300:]}")
    assert res.returncode == 0, res.stderr[-3000:]
    return env_dir


def test_wheel_holds_the_compiled_core_and_one_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "fcam_deploy" in tops and not tops & {"kernels", "export", "benchmarks", "tests"}
    assert any(n.startswith("fcam_deploy/_native_cpu") and n.endswith(".so") for n in names)
    assert not any(n.endswith("_C.so") for n in names)  # the torch extension stays an optional `make kernels` build
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split()[1].split(">")[0].split("<")[0].split("=")[0] for r in requires) == [
        "numpy",
        "onnxruntime",
        "pillow",
    ]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fcam = fcam_deploy.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_lean_venv_has_no_training_stack(lean_venv: Path) -> None:
    res = _run(
        [str(lean_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    dists = {d["name"].lower() for d in json.loads(res.stdout)}
    assert "fcam-deploy" in dists and "onnxruntime" in dists
    assert not dists & HEAVY_DISTS, dists & HEAVY_DISTS


def test_lean_install_predicts_like_the_full_install(lean_venv: Path, onnx_model, tmp_path: Path) -> None:
    from fcam_deploy.runtime import Localizer
    from tests._support.models import blob_image

    model = onnx_model("fcam", "onnx")
    photo = tmp_path / "photo.png"
    Image.fromarray(blob_image(375, 500, 3)).save(photo)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FCAM_ORT_OPS")}
    py = str(lean_venv / "bin" / "python")
    res = _run([py, "-c", PROBE, str(model), str(photo), str(tmp_path / "lean.npz")], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["torch_imported"] is False and got["heavy_imported"] == []
    assert got["native"] is True and str(lean_venv) in got["core"]

    full = Localizer.load(model).predict(Image.open(photo).convert("RGB"))
    lean = np.load(tmp_path / "lean.npz")
    assert got["class_index"] == full.class_index and got["score"] == full.score
    assert got["boxes"] == [list(b) for b in full.boxes]
    np.testing.assert_array_equal(lean["map"], full.map)
    np.testing.assert_array_equal(lean["mask"], full.mask)
    np.testing.assert_array_equal(lean["logits"], full.logits)

    out = tmp_path / "pred"
    cli = _run(
        [str(lean_venv / "bin" / "fcam"), "predict", str(model), str(photo), "--out", str(out)], env=env, cwd=tmp_path
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    record = json.loads((out / "photo.json").read_text())
    assert record["boxes"] == [list(b) for b in full.boxes] and record["class_index"] == full.class_index
    assert Image.open(out / "photo.png").size == (500, 375)


def test_lean_install_names_the_extra_a_command_needs(lean_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = _run(
        [str(lean_venv / "bin" / "fcam"), "export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "m.onnx")],
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert "fcam export: error:" in res.stderr and 'pip install "fcam-deploy[train]"' in res.stderr
    assert "Traceback" not in res.stderr
    help_ = _run([str(lean_venv / "bin" / "fcam"), "--help"], env=env, cwd=tmp_path)
    assert help_.returncode == 0 and "predict" in help_.stdout
    doctor = _run([str(lean_venv / "bin" / "fcam"), "doctor", "--no-engine", "--json"], env=env, cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # absent optional legs are "missing", not failures
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["native-core"]["status"] == "ok" and str(lean_venv) in checks["native-core"]["detail"]
    assert checks["torch"]["status"] == "missing" and "fcam-deploy[train]" in checks["torch"]["detail"]
