"""The `fcam` entry point: dispatch, typed-error handling, and a non-editable install that works."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fcam_deploy import cli
from fcam_deploy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_every_command_registers() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {
        "data", "train", "eval", "score", "demo", "export", "parity", "build-engine", "doctor", "predict", "bench",
    }


def test_typed_error_becomes_exit_code_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = cli.build_parser

    def patched() -> argparse.ArgumentParser:
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

        def boom(args: argparse.Namespace) -> int:
            raise ConfigError("bad value for --x (fix: pass a positive integer)")

        sub.choices["doctor"].set_defaults(func=boom)
        return parser

    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "fcam doctor: error:" in err and "fix: pass a positive integer" in err


@pytest.mark.slow
def test_non_editable_install_gives_working_cli(tmp_path: Path) -> None:
    """`pip install .` (non-editable) must ship the package and a working `fcam` script."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheel_dir.glob("fcam_deploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "fcam_deploy" in tops
    # Only one import package: repo-level folders must not shadow PyPI packages of the same name.
    assert not tops & {"kernels", "export", "benchmarks", "tests"}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fcam = fcam_deploy.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    where = subprocess.run(
        [sys.executable, "-c", "import fcam_deploy; print(fcam_deploy.__file__)"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path,
    ).stdout
    assert str(target) in where
    out = subprocess.run(
        [sys.executable, str(target / "bin" / "fcam"), "--help"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path,
    ).stdout
    assert "demo" in out and "score" in out
