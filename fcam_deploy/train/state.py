"""Atomic, resumable training state: safetensors (tensors) + JSON (everything else), never pickled.

Layout under a run's ``state/`` folder::

    state/LATEST                      one line: the name of the newest complete snapshot
    state/step-000000123/state.safetensors   model + optimizer tensors + torch RNG state
    state/step-000000123/state.json          epoch, step, batch-in-epoch, ELB t, best-so-far, history, ...

A snapshot is written into ``state/.tmp-*`` (files fsynced), renamed into place (one atomic rename), then
``LATEST`` is replaced atomically (tmp + fsync + ``os.replace``) and older snapshots are removed. A crash at any
point leaves ``LATEST`` naming a complete snapshot; the only partial files are ``.tmp-*`` entries, which
:func:`load_latest_state` ignores and :func:`clean_tmp` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fcam_deploy import _io
from fcam_deploy.errors import CheckpointError

__all__ = ["TrainState", "atomic_write_text", "clean_tmp", "load_latest_state", "save_state"]

_FORMAT = "fcam-deploy-train-state"


@dataclass
class TrainState:
    """Scalars of a run; tensors travel separately (model / optimizer / RNG)."""

    kind: str
    epoch: int = 0  # epoch currently running (0-based); == epochs when finished
    batch_in_epoch: int = 0  # next batch index to run inside ``epoch``
    step: int = 0  # optimizer steps done
    elb_t: float = 1.0
    best_value: float | None = None
    best_epoch: int | None = None
    best_threshold: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (the package's one helper, :func:`fcam_deploy._io.atomic_write_text`:
    tmp in the same folder, fsync, ``os.replace``, umask mode, stale temporaries of killed writers removed)."""
    _io.atomic_write_text(path, text)


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    for idx, sc in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(
    state_dir: Path,
    state: TrainState,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    keep: int = 1,
) -> Path:
    """Write one snapshot atomically and point ``LATEST`` at it; returns the snapshot folder."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:09d}-e{state.epoch:04d}b{state.batch_in_epoch:06d}"
    final = state_dir / name
    tmp = state_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_t)
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": _FORMAT})
    doc = {"format": _FORMAT, "format_version": 1, "state": state.__dict__, "optimizer": opt_meta}
    with open(tmp / "state.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / "state.safetensors", "rb") as fh:
        os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # same step saved twice (e.g. end of epoch right after a step save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(state_dir)
    atomic_write_text(state_dir / "LATEST", name + "\n")
    snaps = sorted(p for p in state_dir.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in snaps[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def clean_tmp(state_dir: Path) -> None:
    """Remove leftovers of an interrupted write (``.tmp-*`` entries)."""
    if not state_dir.is_dir():
        return
    for p in state_dir.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def load_latest_state(
    state_dir: Path,
) -> tuple[TrainState, dict[str, torch.Tensor], dict[str, Any], torch.Tensor] | None:
    """Read the snapshot ``LATEST`` names: ``(state, model_state, optimizer_state_dict, torch_rng)``, or None.

    Raises:
        CheckpointError: ``LATEST`` names a missing or unreadable snapshot.
    """
    from safetensors.torch import load_file

    latest = state_dir / "LATEST"
    if not latest.is_file():
        return None
    name = latest.read_text(encoding="utf-8").strip()
    snap = state_dir / name
    try:
        doc = json.loads((snap / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(snap / "state.safetensors"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"training state {snap} is unreadable: {exc} (fix: delete {state_dir} to restart)"
        ) from exc
    if doc.get("format") != _FORMAT:
        raise CheckpointError(f"{snap}/state.json is not a {_FORMAT} file")
    state = TrainState(**doc["state"])
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    opt = _unflatten_optimizer(tensors, doc["optimizer"])
    return state, model_state, opt, tensors["rng.torch_cpu"]
