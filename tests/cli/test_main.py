"""The `fcam` entry point: dispatch, typed-error handling; extras named when missing."""

from __future__ import annotations

import argparse

import pytest

from fcam_deploy import cli
from fcam_deploy.errors import ConfigError


def test_every_command_registers() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {
        "data",
        "train",
        "eval",
        "score",
        "demo",
        "export",
        "parity",
        "build-engine",
        "doctor",
        "predict",
        "bench",
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


def test_a_command_of_a_missing_extra_says_which_extra(monkeypatch, capsys) -> None:
    """Without the 'train' extra, `fcam train` stops before any work: typed error naming the extra, exit 2."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    code = cli.main(["train", "fcam", "--classifier", "nowhere", "--data", "nowhere", "--out", "nowhere"])
    err = capsys.readouterr().err
    assert code == 2
    assert "fcam train: error:" in err and 'pip install "fcam-deploy[train]"' in err and "torch" in err
    assert "Traceback" not in err
