"""Checkpoints: round trip, atomic replacement, and typed errors for every kind of damage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from fcam_deploy.errors import CheckpointError
from fcam_deploy.models import (
    FCAM,
    CAMClassifier,
    CheckpointMeta,
    build_classifier,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from fcam_deploy.models import checkpoint as ckpt_mod

ARCH = "resnet18_s8"


def _perturbed_fcam(seed: int = 0) -> FCAM:
    torch.manual_seed(seed)
    model = FCAM(build_classifier(ARCH, 3))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(seed + 7)
    return model.eval()


def _meta(**kw: object) -> CheckpointMeta:
    base: dict[str, object] = {
        "arch": ARCH,
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "input_size": (64, 64),
        "threshold": 0.25,
        "extra": {"epoch": 3},
    }
    base.update(kw)
    return CheckpointMeta(**base)  # type: ignore[arg-type]


def _listing(parent: Path) -> list[str]:
    return sorted(str(p.relative_to(parent)) for p in parent.rglob("*"))


@pytest.mark.parametrize("kind", ["fcam", "classifier"])
def test_round_trip_identical_outputs(tmp_path: Path, kind: str) -> None:
    model: FCAM | CAMClassifier = _perturbed_fcam()
    if kind == "classifier":
        model = model.classifier
    d = save_checkpoint(tmp_path / "ck", model, _meta())
    assert _listing(tmp_path) == ["ck", "ck/config.json", "ck/model.safetensors"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["format"] == "fcam-deploy-checkpoint" and cfg["format_version"] == 1 and cfg["kind"] == kind
    assert cfg["arch"] == ARCH and cfg["input_size"] == [64, 64] and cfg["threshold"] == 0.25
    assert cfg["extra"] == {"epoch": 3} and cfg["class_names"] == ["a", "b", "c"]
    # no pickle anywhere: the weights file starts with the safetensors little-endian header length + JSON
    raw = (d / "model.safetensors").read_bytes()
    assert raw[8:9] == b"{"
    loaded, meta = load_checkpoint(d)
    assert type(loaded) is type(model) and meta.kind == kind and meta.threshold == 0.25
    assert meta.input_size == (64, 64) and meta.class_names == ["a", "b", "c"]
    sd0, sd1 = model.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    x = torch.randn(2, 3, 64, 72)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for u, v in zip(a, b):
        if isinstance(u, list):
            assert all(torch.equal(p, q) for p, q in zip(u, v))
        else:
            assert torch.equal(u, v)
    if kind == "classifier":  # a loaded classifier is trainable again (stage-1 resume)
        assert all(p.requires_grad for p in loaded.parameters())
    if kind == "fcam":
        assert isinstance(loaded, FCAM)
        assert not any(p.requires_grad for p in loaded.classifier.parameters())
        assert all(p.requires_grad for p in loaded.trainable_parameters())
        loaded.train()
        assert not loaded.classifier.training


@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_and_interrupted_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    """The directory holds the old complete checkpoint or the new one; a failed rename leaves no partial file."""
    if not exchange:
        monkeypatch.setattr(ckpt_mod, "_exchange", lambda a, b: False)
    old, new = _perturbed_fcam(0), _perturbed_fcam(1)
    d = tmp_path / "ck"
    save_checkpoint(d, old, _meta(threshold=0.1))
    save_checkpoint(d, new, _meta(threshold=0.2))  # overwrite works
    assert _listing(tmp_path) == ["ck", "ck/config.json", "ck/model.safetensors"]
    m, meta = load_checkpoint(d)
    assert meta.threshold == 0.2 and torch.equal(
        m.decoder.blocks[0].conv1[0].weight, new.decoder.blocks[0].conv1[0].weight
    )

    def boom(*a: object, **k: object) -> None:
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(ckpt_mod, "_exchange", boom if exchange else (lambda a, b: False))
    if not exchange:
        real_replace = os.replace
        calls = {"n": 0}

        def second_fails(src: object, dst: object) -> None:  # move-aside succeeds, the swap-in fails
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("simulated crash during rename")
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(ckpt_mod.os, "replace", second_fails)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(d, old, _meta(threshold=0.3))
    monkeypatch.undo()
    assert _listing(tmp_path) == ["ck", "ck/config.json", "ck/model.safetensors"]  # no tmp or partial file
    m, meta = load_checkpoint(d)
    assert meta.threshold == 0.2  # still the previous complete checkpoint
    assert torch.equal(m.decoder.blocks[0].conv1[0].weight, new.decoder.blocks[0].conv1[0].weight)


def test_first_write_interrupted_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(fh_path: Path, data: bytes) -> None:
        with open(fh_path, "xb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("simulated disk full")

    monkeypatch.setattr(ckpt_mod, "_write_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck", _perturbed_fcam(), _meta())
    assert _listing(tmp_path) == []


def _saved(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ck", _perturbed_fcam(), _meta())


def _edit_config(d: Path, **changes: object) -> None:
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is _DELETE:
            del cfg[k]
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"format": "something-else"}, "format is 'something-else'"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"arch": "resnet51"}, "unknown arch 'resnet51'"),
        ({"kind": "detector"}, "kind must be"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"class_names": ["a"]}, "1 class_names for num_classes=3"),
        ({"input_size": [64]}, "input_size"),
        ({"std": [0.2, 0.0, 0.2]}, "std must be positive"),
        ({"threshold": 1.5}, "threshold must be null"),
        ({"mean": _DELETE}, "missing keys \\['mean'\\]"),
        ({"weights_sha256": "0" * 64}, "SHA-256"),
    ],
)
def test_bad_config_raises(tmp_path: Path, changes: dict[str, object], pattern: str) -> None:
    d = _saved(tmp_path)
    _edit_config(d, **changes)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(d)


def test_mismatched_weights_raise(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    # other num_classes: config consistent with itself, weights of another shape (digest dropped to reach it)
    _edit_config(d, num_classes=5, class_names=[], weights_sha256=_DELETE)
    with pytest.raises(
        CheckpointError, match=r"2 tensors do not fit.*head\.bias.*\(3,\).*\(5,\).*head\.weight.*\(3, 128\).*\(5, 128\)"
    ):
        load_checkpoint(d)
    # other architecture
    _edit_config(d, num_classes=3, arch="efficientnet_lite0_s8")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(d)
    # classifier weights declared as fcam -> decoder tensors missing
    d2 = save_checkpoint(tmp_path / "clf", _perturbed_fcam().classifier, _meta())
    _edit_config(d2, kind="fcam", weights_sha256=_DELETE)
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_checkpoint(d2)


def test_corrupt_files_raise(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    w = d / "model.safetensors"
    blob = w.read_bytes()
    w.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(d)
    _edit_config(d, weights_sha256=_DELETE)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint_meta(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    d3 = _saved(tmp_path / "x")
    (d3 / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(d3)


def test_save_validates(tmp_path: Path) -> None:
    model = _perturbed_fcam()
    with pytest.raises(CheckpointError, match="num_classes"):
        save_checkpoint(tmp_path / "a", model, _meta(num_classes=4, class_names=[]))
    with pytest.raises(CheckpointError, match="threshold"):
        save_checkpoint(tmp_path / "a", model, _meta(threshold=float("nan")))
    with pytest.raises(CheckpointError, match="parent directory"):
        save_checkpoint(tmp_path / "no" / "a", model, _meta())
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "a", model, _meta(extra={"x": object()}))
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        save_checkpoint(tmp_path / "file", model, _meta())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
