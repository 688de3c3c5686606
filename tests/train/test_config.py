"""Typed configs: built-ins load, overrides merge, typos are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fcam_deploy.errors import ConfigError
from fcam_deploy.train.config import (
    ClassifierTrainConfig,
    FCAMTrainConfig,
    available_configs,
    load_train_config,
)
from fcam_deploy.train.crf import CRFConfig
from fcam_deploy.train.demo import load_demo_config
from fcam_deploy.train.elb import ELBConfig
from fcam_deploy.train.seeds import SeedConfig


def test_builtin_configs_load() -> None:
    assert {"cub_resnet50", "demo"} <= set(available_configs("fcam"))
    for name in available_configs("classifier"):
        assert isinstance(load_train_config("classifier", name), ClassifierTrainConfig)
    for name in available_configs("fcam"):
        assert isinstance(load_train_config("fcam", name), FCAMTrainConfig)
    off = load_train_config("fcam", "cub_resnet50")
    # the official README values (docs/method.md §2.2)
    assert (off.optim.lr, off.optim.momentum, off.optim.nesterov, off.optim.weight_decay) == (0.01, 0.9, True, 1e-4)
    assert (off.crf.lam, off.crf.sigma_rgb, off.crf.sigma_xy, off.elb.lam, off.elb.mul, off.elb.max_t) == (
        2e-9,
        15.0,
        100.0,
        0.1,
        1.01,
        10.0,
    )
    assert (off.seeds.n_fg, off.seeds.n_bg, off.seeds.min_p, off.seeds.erode_k, off.seeds.dilate_k) == (
        1,
        1,
        0.1,
        11,
        3,
    )
    # the official filter (permutohedral lattice) at the full resolution, crf_scale 1, 50 epochs of batch 32
    assert (off.crf.kernel, off.crf.grid, off.crf.scale) == ("lattice", None, 1.0)
    assert (off.epochs, off.batch_size, off.resize_size, off.optim.step_size, off.optim.min_lr) == (
        50,
        32,
        256,
        1000,
        1e-7,
    )
    assert (off.select_metric, off.val_curve_interval) == ("MaxBoxAcc", 0.004)
    cls = load_train_config("classifier", "cub_resnet50")
    assert (cls.optim.lr, cls.optim.step_size, cls.optim.high_lr_ratio, cls.epochs, cls.val_curve_interval) == (
        0.0017,
        15,
        10.0,
        50,
        0.004,
    )
    for name in ("default", "quick"):
        load_demo_config(name)


def test_overrides_and_errors(tmp_path: Path) -> None:
    c = load_train_config("fcam", "demo", {"epochs": 7, "crf": {"lam": 1e-8}})
    assert c.epochs == 7 and c.crf.lam == 1e-8 and c.crf.sigma_rgb == 15.0
    # nested sections are typed configs whether or not the JSON / the overrides name them
    for cfg in (c, load_train_config("fcam", "cub_resnet50", {"epochs": 1}), FCAMTrainConfig()):
        assert isinstance(cfg.seeds, SeedConfig) and isinstance(cfg.crf, CRFConfig) and isinstance(cfg.elb, ELBConfig)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"epochs": 1, "seeds": {"n_fg": 2}}))
    b = load_train_config("fcam", bare)
    assert b.seeds.n_fg == 2 and b.seeds.dilate_k == SeedConfig().dilate_k and isinstance(b.crf, CRFConfig)
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config("fcam", "demo", {"epoch": 3})
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config("fcam", "demo", {"crf": {"sigma": 3}})
    with pytest.raises(ConfigError, match="grid"):  # a pooled grid with the lattice kernel is a mistake
        load_train_config("fcam", "demo", {"crf": {"grid": 12}})
    assert load_train_config("fcam", "demo", {"crf": {"kernel": "pooled", "grid": 12}}).crf.grid == 12
    with pytest.raises(ConfigError, match="kernel"):
        load_train_config("fcam", "demo", {"crf": {"kernel": "permuto"}})
    with pytest.raises(ConfigError, match="select_metric"):
        load_train_config("classifier", "demo", {"select_metric": "IoU"})
    with pytest.raises(ConfigError, match="no built-in"):
        load_train_config("fcam", "nope")
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"epochs": 2, "batch_size": 4}))
    assert load_train_config("classifier", p).batch_size == 4
    p.write_text("{bad json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_train_config("classifier", p)


def test_a_folder_named_like_a_builtin_config_does_not_shadow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fcam demo --out demo` leaves a folder ./demo; the built-in config "demo" must still load."""
    want = load_train_config("fcam", "demo")
    (tmp_path / "demo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_train_config("fcam", "demo") == want
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config("fcam", "demo.json")  # a .json name is a path: missing file, typed error
