"""``fcam localize``: image listing, the local and Ray engines against in-process ``Localizer.predict``, the
Parquet file (schema, sort, byte-identical across engines), resume after ``kill -9``, error rows and guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.scale._scale_helpers import assert_rows_match, file_sha256, listed_names

pq = pytest.importorskip("pyarrow.parquet", reason="the scale extra (pyarrow) is not installed")

from fcam_deploy.errors import ConfigError
from fcam_deploy.scale.images import list_images
from fcam_deploy.scale.localize import LocalizeConfig, ResultStore, localize

# Ray Data's own deprecations (its context), not this project's code
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


def _rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def _run(model: Path, images: Path, out: Path, **kw: Any) -> Any:
    return localize(LocalizeConfig(model=model, images=images, out=out, progress=False, **kw))


# ---------------------------------------------------------------------------------------------------------------
# Listing


def test_list_images_folder_and_list_file(image_dir: Path, tmp_path: Path) -> None:
    s = list_images(image_dir)
    assert list(s.names) == listed_names(image_dir)  # recursive, sorted, hidden files and non-images skipped
    assert ".hidden.png" not in s.names and "notes.txt" not in s.names
    assert all(Path(p) == image_dir.resolve() / n for n, p in zip(s.names, s.paths, strict=True))

    lst = tmp_path / "list.txt"
    outside = image_dir / "extra" / "e00.png"
    (tmp_path / "a.png").write_bytes((image_dir / "extra" / "e04.png").read_bytes())
    lst.write_text(f"# my images\na.png\n\n{outside}\nmissing.png\n")
    s = list_images(lst)
    assert s.names == tuple(sorted(["a.png", outside.resolve().as_posix(), "missing.png"]))
    assert not s.all_relative()  # an absolute entry outside the list's folder
    lst.write_text("a.png\n./a.png\n")
    with pytest.raises(ConfigError, match=r"list.txt:2: .* same image as line 1"):
        list_images(lst)
    with pytest.raises(ConfigError, match="no such folder"):
        list_images(tmp_path / "nope")
    with pytest.raises(ConfigError, match="is an image"):
        list_images(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image"):
        list_images(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------------
# Local engine


def test_local_engine_rows_equal_predict(tiny_onnx: Path, image_dir: Path, reference: dict, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    maps = tmp_path / "maps"
    summary = _run(tiny_onnx, image_dir, out, engine="local", batch_size=7, save_maps=maps, commit_every=50)
    assert summary.images == len(reference) and summary.localized == len(reference) and summary.skipped == 0
    assert summary.errors == sum(1 for r in reference.values() if r["error"]) == 3
    rows = _rows(out)
    assert_rows_match(rows, reference, file_sha256(tiny_onnx))
    errors = {r["image"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"bad/corrupt.png", "bad/empty.png", "bad/truncated.jpg"}
    assert "truncated" in errors["bad/truncated.jpg"] and "not a readable image" in errors["bad/corrupt.png"]
    # maps: <image>.npy, float32 at the original size, equal to the in-process map
    for row in rows[::37]:
        if row["error"]:
            assert row["map_file"] is None
            continue
        assert row["map_file"] == row["image"] + ".npy"
        got = np.load(maps / row["map_file"], allow_pickle=False)
        assert got.dtype == np.float32 and got.shape == (row["height"], row["width"])
        np.testing.assert_array_equal(got, reference[row["image"]]["map"])
    # the file: documented schema, its facts in the key/value metadata, no leftovers
    meta = json.loads(pq.read_schema(out).metadata[b"fcam_deploy.localize"])
    assert meta == {"schema_version": 1, "model_sha256": file_sha256(tiny_onnx)}
    assert pq.read_schema(out).names == [
        "image",
        "width",
        "height",
        "class_index",
        "class_name",
        "score",
        "boxes",
        "tau",
        "model_sha256",
        "map_file",
        "error",
    ]
    assert not (tmp_path / "rows.parquet.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps", "rows.parquet"]


def test_resume_overwrite_and_guards(
    tiny_onnx: Path, other_onnx: Path, fresh_dir: Path, reference: dict, tmp_path: Path
) -> None:
    out = tmp_path / "r.parquet"
    _run(tiny_onnx, fresh_dir, out, batch_size=16)
    first = out.read_bytes()
    with pytest.raises(ConfigError, match="already exists; fix: --resume"):
        _run(tiny_onnx, fresh_dir, out)
    with pytest.raises(ConfigError, match="rows of another model"):
        _run(other_onnx, fresh_dir, out, resume=True)
    assert not (tmp_path / "r.parquet.partial").exists()  # a refused run leaves no parts folder behind
    # resume with nothing new: everything skipped, the same bytes
    s = _run(tiny_onnx, fresh_dir, out, resume=True)
    assert (s.localized, s.skipped) == (0, len(reference)) and out.read_bytes() == first
    # a repaired image is localized again only with --retry-errors; a removed image's row is dropped
    (fresh_dir / "bad" / "corrupt.png").write_bytes((fresh_dir / "extra" / "e00.png").read_bytes())
    (fresh_dir / "extra" / "e05.jpg").unlink()
    s = _run(tiny_onnx, fresh_dir, out, resume=True)
    assert (s.localized, s.dropped) == (0, 1)
    s = _run(tiny_onnx, fresh_dir, out, resume=True, retry_errors=True)
    assert s.localized == 3 and s.errors == 2
    rows = {r["image"]: r for r in _rows(out)}
    assert "extra/e05.jpg" not in rows
    fixed, ref = rows["bad/corrupt.png"], reference["extra/e00.png"]
    assert fixed["error"] is None and (fixed["class_index"], fixed["score"], fixed["boxes"]) == (
        ref["class_index"],
        ref["score"],
        ref["boxes"],
    )
    # --overwrite starts over with the other model
    s = _run(other_onnx, fresh_dir, out, overwrite=True)
    assert s.localized == len(rows) and {r["model_sha256"] for r in _rows(out)} == {file_sha256(other_onnx)}
    # option checks
    with pytest.raises(ConfigError, match="exclude each other"):
        LocalizeConfig(model=tiny_onnx, images=fresh_dir, out=out, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="needs --engine ray"):
        LocalizeConfig(model=tiny_onnx, images=fresh_dir, out=out, address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="batch_size must be"):
        LocalizeConfig(model=tiny_onnx, images=fresh_dir, out=out, batch_size=0)


def test_second_writer_is_refused(tiny_onnx: Path, image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "locked.parquet"
    holder = ResultStore(out, file_sha256(tiny_onnx))
    holder.open(resume=False, overwrite=False, retry_errors=False)
    try:
        with pytest.raises(ConfigError, match="another fcam localize is writing"):
            _run(tiny_onnx, image_dir, out, resume=True)
    finally:
        holder.close()


def test_cli_localize_and_missing_extra(tiny_onnx: Path, image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fcam_deploy",
            "localize",
            "--model",
            str(tiny_onnx),
            "--images",
            str(image_dir),
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["errors"] == 3 and summary["localized"] == summary["images"] == len(listed_names(image_dir))
    # without the scale extra: a typed error naming it, exit 2 (ray and pyarrow made unimportable in a child)
    for blocked, engine in (("ray", "ray"), ("pyarrow", "local")):
        code = (
            f"import sys; sys.modules[{blocked!r}] = None; from fcam_deploy.cli import main; "
            f"sys.exit(main(['localize', '--model', {str(tiny_onnx)!r}, '--images', {str(image_dir)!r}, "
            f"'--out', {str(tmp_path / 'x.parquet')!r}, '--engine', {engine!r}]))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300, env=env
        )
        assert proc.returncode == 2, proc.stderr
        assert 'pip install "fcam-deploy[scale]"' in proc.stderr and "fcam localize: error:" in proc.stderr


def test_scale_modules_do_not_import_torch_or_ray(image_dir: Path) -> None:
    """The worker-side code imports the runtime, NumPy and PIL only; Ray only when an engine needs it."""
    code = (
        "import sys\n"
        "import fcam_deploy.scale.localize as L, fcam_deploy.scale.serve as S, fcam_deploy.scale.rows\n"
        f"d = L.decode_batch({{'image': ['a'], 'path': [{str(image_dir / 'extra' / 'e00.png')!r}]}})\n"
        "assert d['pixels'][0].shape == (30, 50, 3), d\n"
        "S.check_request(b'\\x89PNG\\r\\n\\x1a\\n..', 'image/png', {}, 100)\n"
        "print(sorted(m for m in ('torch', 'ray', 'pyarrow') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------
# Ray engine (one local 2-CPU cluster for the session)


@pytest.fixture(scope="module")
def local_file(tiny_onnx: Path, image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted in-process result every other run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("local_run") / "local.parquet"
    _run(tiny_onnx, image_dir, out, engine="local", batch_size=16)
    return out


def test_ray_engine_equals_in_process(
    ray_cluster: Any, tiny_onnx: Path, image_dir: Path, reference: dict, local_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray.parquet"
    summary = _run(tiny_onnx, image_dir, out, engine="ray", actors=2, batch_size=8)
    assert (summary.actors, summary.threads, summary.decode) == (2, 1, "in the actors")
    assert summary.localized == len(reference) and summary.errors == 3
    assert_rows_match(_rows(out), reference, file_sha256(tiny_onnx))
    assert out.read_bytes() == local_file.read_bytes()  # the same file, whatever the engine and actor count
    with pytest.raises(ConfigError, match="do not fit|CPUs, but the Ray cluster has 2"):
        _run(tiny_onnx, image_dir, tmp_path / "x.parquet", engine="ray", actors=3)


def test_kill9_then_resume_gives_the_same_file(
    ray_cluster: Any, tiny_onnx: Path, image_dir: Path, reference: dict, local_file: Path, tmp_path: Path
) -> None:
    """A Ray job killed with SIGKILL after it committed some rows, rerun with --resume: the file equals the
    uninterrupted run's (0 lost, 0 duplicated, 0 wrong rows)."""
    out = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.partial"
    address = ray_cluster.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fcam_deploy",
            "localize",
            "--model",
            str(tiny_onnx),
            "--images",
            str(image_dir),
            "--out",
            str(out),
            "--engine",
            "ray",
            "--address",
            address,
            "--actors",
            "1",
            "--batch-size",
            "2",
            "--commit-every",
            "4",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None and not list(parts.glob("part-*.parquet")):
            time.sleep(0.02)
        assert proc.poll() is None, "the job ended before it could be killed: " + (tmp_path / "killed.log").read_text()
        assert list(parts.glob("part-*.parquet")), "no part committed within 180 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert not out.exists(), "killed before the end: the final file must not exist yet"
    committed = sum(pq.read_metadata(p).num_rows for p in parts.glob("part-*.parquet"))
    assert 0 < committed < len(reference)
    summary = _run(tiny_onnx, image_dir, out, engine="ray", actors=2, batch_size=8, resume=True)
    assert summary.skipped == committed and summary.localized == len(reference) - committed
    assert_rows_match(_rows(out), reference, file_sha256(tiny_onnx))
    assert out.read_bytes() == local_file.read_bytes()
    assert not parts.exists()


def test_ray_engine_missing_model_is_a_typed_error(ray_cluster: Any, image_dir: Path, tmp_path: Path) -> None:
    from fcam_deploy.errors import ModelFormatError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelFormatError, match="bad.onnx"):
        _run(bad, image_dir, tmp_path / "o.parquet", engine="ray")
    assert not (tmp_path / "o.parquet").exists()
