"""kill -9 every command that writes, mid-run, in a real subprocess; then check that nothing half-written is read
as complete, that what existed before is intact or replaced by a complete new version, and that a rerun recovers
(complete outputs, no temporary files left).

``fcam train`` has its own kill -9 test (``tests/train/test_resume.py``: resume gives bit-identical weights).
Each test kills at a point it observes in the file system (the first maps, the first temporary file, ...); when the
command is faster than the poll, the invariants are checked on the finished run instead (the deterministic
clean-up of a killed writer's temporary file is ``test_a_killed_writers_temporary_is_removed_by_the_next_write``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fcam_deploy.cli import main

REPO = Path(__file__).resolve().parents[2]


def _spawn(argv: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "fcam_deploy", *argv],
        cwd=tmp,
        env=env,
        stdout=open(tmp / "child.out", "wb"),
        stderr=open(tmp / "child.err", "wb"),
    )


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 300.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; True when it was killed while running, False when it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    raise AssertionError("the command neither finished nor reached the kill point in time")


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]


def _mode_ok(path: Path) -> bool:
    from fcam_deploy._io import current_umask

    return (path.stat().st_mode & 0o777) == (0o666 & ~current_umask())


@pytest.fixture(scope="module")
def kill_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 8 test images (64 px): long enough runs to be killed in the middle."""
    from fcam_deploy.data import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("kill_set")
    generate_synthetic(root, SynthConfig(size=64, num_classes=3), {"train": 8, "val": 0, "test": 8}, seed=9)
    return root


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    from fcam_deploy._io import atomic_write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".out.json.{dead.pid}.abc123.tmp"
    stale.write_text('{"half": ')
    live = tmp_path / f".out.json.{os.getpid()}.xyz789.tmp"  # a live writer's file is never touched
    live.write_text("{")
    other = tmp_path / f".other.json.{dead.pid}.abc123.tmp"  # nor the temporaries of another file
    other.write_text("{")
    atomic_write_text(tmp_path / "out.json", '{"ok": true}\n')
    assert not stale.exists() and live.exists() and other.exists()
    assert json.loads((tmp_path / "out.json").read_text()) == {"ok": True}
    assert _mode_ok(tmp_path / "out.json")


def test_kill9_export_keeps_the_old_model_or_a_complete_new_one(tmp_path: Path, checkpoint_dir: Path) -> None:
    from fcam_deploy.export.onnx_export import read_onnx_metadata
    from fcam_deploy.runtime import Localizer
    from tests._support.models import tiny_onnx

    out = tmp_path / "m.onnx"
    tiny_onnx(out)  # a previous, complete model at the output path
    old = out.read_bytes()
    proc = _spawn(["export", "--checkpoint", str(checkpoint_dir), "--out", str(out)], tmp_path)
    killed = _kill_when(proc, lambda: any(p.name.startswith(".m.onnx.") for p in tmp_path.iterdir()))
    if out.read_bytes() != old:  # the rename happened: then it is the complete new model
        assert read_onnx_metadata(out).method == "fcam"
    else:
        assert Localizer.load(out).metadata.method == "cam"  # the old model, still usable
    assert killed or proc.returncode == 0
    assert main(["export", "--checkpoint", str(checkpoint_dir), "--out", str(out)]) == 0  # rerun
    assert read_onnx_metadata(out).method == "fcam" and Localizer.load(out).predict(np.zeros((9, 9, 3), np.uint8))
    assert not _temporaries(tmp_path) and _mode_ok(out)


def test_kill9_eval_save_maps_never_scores_a_mixed_folder(
    tmp_path: Path, kill_set: Path, checkpoint_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's reproduction: a complete CAM run, then an F-CAM run into the same folder killed after a few
    maps; `fcam score` must refuse the folder (it exited 0 with a figure of neither run before), and succeed with
    the F-CAM run's own numbers after the rerun."""
    maps = tmp_path / "maps"

    def ev(method: str, json_name: str) -> list[str]:
        return [
            "eval",
            "--checkpoint",
            str(checkpoint_dir),
            "--data",
            str(kill_set),
            "--split",
            "test",
            "--method",
            method,
            "--json",
            str(tmp_path / json_name),
            "--save-maps",
            str(maps),
            "--no-progress",
            "--batch-size",
            "1",
        ]

    def score() -> int:
        return main(
            [
                "score",
                "--maps",
                str(maps),
                "--metadata",
                str(kill_set),
                "--split",
                "test",
                "--predictions",
                str(maps / "predictions.json"),
                "--json",
                str(tmp_path / "s.json"),
                "--no-progress",
            ]
        )

    assert main(ev("cam", "cam.json")) == 0 and score() == 0
    proc = _spawn(ev("fcam", "fcam.json"), tmp_path)
    manifest = maps / "maps_manifest.json"

    def some_new_maps() -> bool:
        try:
            return not json.loads(manifest.read_text())["complete"] and len(list((maps / "test").glob("*.npy"))) >= 2
        except (OSError, ValueError, KeyError):
            return False

    assert _kill_when(proc, some_new_maps), "eval finished before the kill point"
    capsys.readouterr()
    assert score() == 2
    assert "never finished" in capsys.readouterr().err
    assert main(ev("fcam", "fcam.json")) == 0  # rerun
    assert score() == 0
    ev_res, sc_res = (json.loads((tmp_path / n).read_text()) for n in ("fcam.json", "s.json"))
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP", "top1_loc"):
        assert sc_res[key] == ev_res[key], key
    assert json.loads(manifest.read_text())["method"] == "fcam" and not _temporaries(maps)


def test_kill9_score_json_is_old_or_complete(tmp_path: Path, kill_set: Path, checkpoint_dir: Path) -> None:
    maps = tmp_path / "maps"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(checkpoint_dir),
                "--data",
                str(kill_set),
                "--split",
                "test",
                "--json",
                str(tmp_path / "e.json"),
                "--save-maps",
                str(maps),
                "--no-progress",
            ]
        )
        == 0
    )
    out = tmp_path / "s.json"
    out.write_text('{"previous": true}\n')
    argv = [
        "score",
        "--maps",
        str(maps),
        "--metadata",
        str(kill_set),
        "--split",
        "test",
        "--json",
        str(out),
        "--no-progress",
        "--engine",
        "reference",
    ]
    proc = _spawn(argv, tmp_path)
    _kill_when(proc, lambda: any(p.name.startswith(".s.json.") for p in tmp_path.iterdir()))
    doc = json.loads(out.read_text())  # never a torn file
    assert doc == {"previous": True} or doc["num_images"] == 8
    assert main(argv) == 0
    assert json.loads(out.read_text())["num_images"] == 8 and not _temporaries(tmp_path) and _mode_ok(out)


def test_kill9_predict_every_record_is_complete_and_a_rerun_keeps_the_names(tmp_path: Path, onnx_model) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from fcam_deploy.cli.predict import OVERLAY_TAG
    from tests._support.models import blob_image

    images = []
    for k in range(8):
        p = tmp_path / f"img{k}.png"
        Image.fromarray(blob_image(600, 800, k)).save(p)
        images.append(p)
    out = tmp_path / "out"
    argv = ["predict", str(onnx_model("fcam", "onnx")), *map(str, images), "--out", str(out)]
    proc = _spawn(argv, tmp_path)
    killed = _kill_when(proc, lambda: out.is_dir() and len(list(out.glob("*.json"))) >= 2)
    for rec in out.glob("*.json"):  # a record exists only for a finished image, and its overlay is complete
        doc = json.loads(rec.read_text())
        with Image.open(rec.with_suffix(".png")) as im:
            im.load()
            assert im.size == (800, 600) and OVERLAY_TAG in im.text
        assert doc["boxes"] is not None
    assert killed or proc.returncode == 0
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"img{k}.{e}" for k in range(8) for e in ("json", "png"))


def test_kill9_quantize_keeps_the_old_model_or_a_complete_new_one(tmp_path: Path, kill_set: Path, onnx_model) -> None:  # type: ignore[no-untyped-def]
    from fcam_deploy.runtime import Localizer

    out = tmp_path / "q.onnx"
    shutil.copy(onnx_model("cam", "onnx"), out)  # a previous file at the output path
    old = out.read_bytes()
    argv = ["quantize", str(onnx_model("fcam", "onnx")), "--data", str(kill_set), "--images", "8", "--out", str(out)]
    proc = _spawn(argv, tmp_path)
    _kill_when(proc, lambda: any(p.name.startswith(".q.onnx.") for p in tmp_path.iterdir()))
    if out.read_bytes() != old:  # replaced: then by the complete INT8 model
        assert Localizer.load(out).metadata.extra.get("precision") == "int8"
    else:
        assert Localizer.load(out).metadata.method == "cam"
    assert main(argv) == 0
    meta = Localizer.load(out).metadata
    assert meta.extra.get("precision") == "int8" and meta.method == "fcam"
    assert not _temporaries(tmp_path) and _mode_ok(out)


def test_kill9_bench_results_are_absent_or_complete(tmp_path: Path, kill_set: Path, checkpoint_dir: Path) -> None:
    suite = tmp_path / "tiny.json"
    suite.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "kill9",
                "archs": [],
                "methods": ["cam"],
                "backends": ["torch", "onnxruntime"],
                "batches": [1],
                "resolutions": [0],
                "warmup": 0,
                "iters": 1,
                "end_to_end": False,
                "localization_limit": 0,
                "parity_limit": 0,
                "evaluator_maps": 2,
                "postprocess_maps": 2,
            }
        )
    )
    out = tmp_path / "bench"
    argv = [
        "bench",
        "--suite",
        str(suite),
        "--out",
        str(out),
        "--checkpoint",
        str(checkpoint_dir),
        "--data",
        str(kill_set),
        "--no-plots",
    ]
    proc = _spawn(argv, tmp_path)
    killed = _kill_when(proc, lambda: any((out / "work" / "onnx").glob("*.onnx")))
    results = out / "results.json"
    if results.exists():  # only ever the complete document
        assert json.loads(results.read_text())["records"]
    assert killed or proc.returncode == 0
    assert main(argv) == 0
    doc = json.loads(results.read_text())
    assert any(r["kind"] == "latency" for r in doc["records"]) and (out / "report.md").is_file()
