"""Suite definitions: the built-in ones load and validate; bad definitions raise typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fcam_deploy.bench.suite import ALL_BACKENDS, ALL_METHODS, SuiteConfig, load_suite, suite_dir
from fcam_deploy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["quick", "standard", "full"])
def test_builtin_suites_load(name: str) -> None:
    cfg = load_suite(name)
    assert cfg.name == name
    assert set(cfg.methods) <= set(ALL_METHODS) and set(cfg.backends) <= set(ALL_BACKENDS)


def test_quick_covers_every_method() -> None:
    assert set(load_suite("quick").methods) == set(ALL_METHODS)


def test_benchmarks_folder_shows_the_same_definitions() -> None:
    link = REPO / "benchmarks" / "suites"
    assert link.resolve() == suite_dir().resolve()


def test_suite_by_path_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"name": "mine", "methods": ["cam"], "batches": [2]}))
    assert load_suite(p).batches == (2,)
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suite("nope")
    p.write_text(json.dumps({"name": "x", "methods": ["gradcam++"]}))
    with pytest.raises(ConfigError, match="unknown methods"):
        load_suite(p)
    p.write_text(json.dumps({"name": "x", "batch": [1]}))
    with pytest.raises(ConfigError, match="unknown suite keys"):
        load_suite(p)
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="one JSON object"):
        load_suite(p)
    with pytest.raises(ConfigError, match="batches"):
        SuiteConfig(name="x", batches=(0,))
