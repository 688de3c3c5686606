"""Stage 1 (classifier) and stage 2 (F-CAM) training loops: resumable, DDP-ready, validated every epoch.

Determinism contract (what makes ``--resume`` and DDP exact):

* the sample order of epoch ``e`` is ``randperm(n_train)`` from a generator seeded with ``(seed, e)``, cut into
  global batches of ``batch_size`` (``drop_last=False`` on one process; with W > 1 processes an incomplete last
  batch is dropped, and rank r takes the r-th contiguous slice of each global batch);
* every sample's augmentation (crop, flip) runs under RNGs seeded from ``(seed, epoch, index)``, and its F-CAM
  seeds are drawn from a ``torch.Generator`` seeded the same way, so a sample's randomness does not depend on the
  batch, the rank, or whether the run was resumed;
* the training state (model, optimizer, epoch, batch, step, ELB t, best-so-far, history) is saved atomically at
  every epoch end and every ``save_every_steps`` steps. Resuming from a snapshot taken after step s replays steps
  s+1.. exactly as the uninterrupted run did (bit-identical on the same machine and thread count).

Model selection follows the spec (docs/method.md §2.7): for F-CAM the validation split is scored at epoch 0 (the
untrained decoder) and after every epoch; for the classifier after every epoch (an untrained classifier is not a
candidate), and the epoch maximising ``select_metric`` is kept
in ``OUT/best`` (its validation-optimal tau is stored in the checkpoint's ``threshold``); ``OUT/last`` holds the
final epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcam_deploy.errors import CheckpointError, ConfigError
from fcam_deploy.train.config import ClassifierTrainConfig, FCAMTrainConfig, OptimConfig, config_to_dict
from fcam_deploy.train.distributed import DistInfo, convert_sync_batchnorm, init_distributed
from fcam_deploy.train.elb import ELBState
from fcam_deploy.train.losses import fcam_loss
from fcam_deploy.train.seeds import sample_seeds
from fcam_deploy.train.state import TrainState, atomic_write_text, clean_tmp, load_latest_state, save_state

__all__ = ["TrainResult", "normalize_cam", "sample_generator_seed", "train_classifier", "train_fcam"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where a run left its outputs and what it selected."""

    out_dir: Path
    best_dir: Path
    last_dir: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    steps: int
    seconds: float


# ----------------------------------------------------------------------------------------------------------- utils


def sample_generator_seed(seed: int, epoch: int, index: int, salt: str = "") -> int:
    """A 63-bit seed from (seed, epoch, sample index, salt), stable across Python runs and platforms."""
    h = hashlib.blake2b(f"{seed}/{epoch}/{index}/{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF_FFFF


def normalize_cam(cam: torch.Tensor) -> torch.Tensor:
    """Per-map min-max of (N, h, w) CAMs without epsilon; NaN (constant map) -> 0 (docs/method.md §1.5)."""
    flat = cam.flatten(1)
    c = cam - flat.min(1).values[:, None, None]
    c = c / c.flatten(1).max(1).values[:, None, None]
    return torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)


class _IndexedItems(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Adds the dataset index to each item; ``set_epoch`` selects the epoch of the base dataset's per-item
    generators (WSOLDataset seeds each item's crop/flip from (seed, epoch, index))."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        item = dict(self.base[i])
        item["index"] = int(i)
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], (int, np.integer)):
            out[k] = torch.as_tensor(vals, dtype=torch.int64)
        else:
            out[k] = vals
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, world: int = 1) -> list[list[int]]:
    """Global batches (lists of dataset indices) of one epoch, deterministic in (seed, epoch)."""
    g = torch.Generator().manual_seed(sample_generator_seed(seed, epoch, -1, "perm"))
    perm = torch.randperm(n, generator=g).tolist()
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if world > 1 and batches and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return batches


def _rank_slice(batch: list[int], rank: int, world: int) -> list[int]:
    per = len(batch) // world
    return batch[rank * per : (rank + 1) * per]


def _make_optimizer(params: list[tuple[str, nn.Parameter]], cfg: OptimConfig) -> torch.optim.Optimizer:
    high: list[nn.Parameter] = []
    base: list[nn.Parameter] = []
    used = {p: False for p in cfg.high_lr_prefixes}
    for name, p in params:
        hit = [pre for pre in cfg.high_lr_prefixes if name == pre or name.startswith(pre + ".")]
        for pre in hit:
            used[pre] = True
        (high if hit else base).append(p)
    unused = [p for p, u in used.items() if not u]
    if unused:
        raise ConfigError(
            f"optim.high_lr_prefixes {unused} match no trainable parameter "
            f"(names look like {[n for n, _ in params[:3]]})"
        )
    groups = [{"params": base, "lr": cfg.lr, "initial_lr": cfg.lr}]
    if high:
        lr_h = cfg.lr * cfg.high_lr_ratio
        groups.append({"params": high, "lr": lr_h, "initial_lr": lr_h})
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def _set_lr(opt: torch.optim.Optimizer, cfg: OptimConfig, epoch: int) -> None:
    f = cfg.gamma ** (epoch // max(cfg.step_size, 1))
    for g in opt.param_groups:
        g["lr"] = max(g["initial_lr"] * f, cfg.min_lr)


class _JsonlLog:
    """JSON-lines log; each record is one ``write`` of a whole line (O_APPEND), so no half-written records."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is None:
            if path.exists():
                path.unlink()
        elif path.exists():  # resuming: drop records past the restored snapshot (they will be replayed)
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if int(rec.get("step", 0)) <= keep_until_step:
                    kept.append(line)
            atomic_write_text(path, "".join(x + "\n" for x in kept))

    def write(self, rec: dict[str, Any]) -> None:
        data = (json.dumps(rec, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _finite(losses: dict[str, float], where: str) -> None:
    bad = {k: v for k, v in losses.items() if not np.isfinite(v)}
    if bad:
        raise FloatingPointError(f"non-finite loss at {where}: {bad} (fix: lower the learning rate or CRF weight)")


# --------------------------------------------------------------------------------------------------- data & eval


@dataclass
class _Data:
    train: Any
    val: Any
    val_meta: Any
    num_classes: int
    class_names: list[str]


def _open_data(
    data_dir: Path, size: int, resize: int, mean: tuple[float, ...], std: tuple[float, ...], seed: int
) -> _Data:
    from fcam_deploy.data import WSOLDataset, open_dataset

    root = Path(data_dir)
    if not (root / "metadata").is_dir():
        raise ConfigError(
            f"{root} is not a WSOL dataset folder (no metadata/) (fix: run `fcam data synth --out {root}`"
            " or point --data at a folder in the wsolevaluation layout)"
        )
    tr_meta = open_dataset(root, "train")
    va_meta = open_dataset(root, "val")
    names_file = root / "metadata" / "class_names.txt"
    names = names_file.read_text(encoding="utf-8").splitlines() if names_file.is_file() else []
    k = int(tr_meta.num_classes)
    names = names if len(names) == k else [str(i) for i in range(k)]
    train = WSOLDataset(
        tr_meta, root / "images", train=True, size=size, resize=resize, mean=mean, std=std, seed=seed, cache=True
    )
    val = WSOLDataset(va_meta, root / "images", train=False, size=size, resize=size, mean=mean, std=std, cache=True)
    return _Data(train, val, va_meta, k, names)


def evaluate_split(
    maps: list[np.ndarray],
    meta: Any,
    with_masks: bool = False,
    cam_curve_interval: float = 0.01,
    engine: Literal["auto", "fast", "reference"] = "auto",
) -> dict[str, Any]:
    """Protocol metrics (percent) of maps (S, S) in [0, 1], one per ``meta.image_ids`` entry.

    Maps go to the protocol's 224 x 224 frame as in every command (:func:`fcam_deploy.metrics.model_eval.
    to_protocol_frame`: float32 bilinear resize, align_corners=False), then are scored
    by :func:`fcam_deploy.metrics.evaluate_maps` (GT boxes scaled by int truncation, masks nearest-resized) with
    the box ``engine`` ("auto": the numba engine when installed; it gives the reference engine's numbers).
    """
    from fcam_deploy.metrics import evaluate_maps
    from fcam_deploy.metrics.model_eval import to_protocol_frame

    frame: dict[str, np.ndarray] = {}
    for image_id, m in zip(meta.image_ids, maps):
        frame[image_id] = to_protocol_frame(np.asarray(m)[None])[0]
    mask_root = getattr(meta, "mask_root", None) if with_masks else None
    return evaluate_maps(frame, meta, mask_root=mask_root, cam_curve_interval=cam_curve_interval, engine=engine)


def _iter_eval(ds: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    for i in range(0, len(ds), batch_size):
        yield _collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])


@torch.no_grad()
def predict_maps(model: nn.Module, ds: Any, kind: str, device: torch.device, batch_size: int = 64) -> list[np.ndarray]:
    """Localization maps (S, S) float in [0, 1] for every item of an eval dataset.

    ``kind="cam"``: the GT-class CAM of a classifier (min-max at low resolution, bilinear upsampling,
    align_corners=False, not renormalised). ``kind="fcam"``: the F-CAM foreground probability.
    """
    was = model.training
    model.eval()
    out: list[np.ndarray] = []
    for b in _iter_eval(ds, batch_size):
        x = b["image"].to(device)
        y = b["label"].to(device)
        if kind == "cam":
            feats = model.features(x)  # type: ignore[operator]
            cam = normalize_cam(model.cam(feats[-1], y))  # type: ignore[operator]
            m = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        else:
            m = model(x, classes=y).fg_prob
        out.extend(m.clamp(0, 1).double().cpu().numpy())
    model.train(was)
    return out


def validate(
    model: nn.Module, data: _Data, kind: str, device: torch.device, cam_curve_interval: float = 0.01
) -> dict[str, Any]:
    return evaluate_split(
        predict_maps(model, data.val, kind, device), data.val_meta, cam_curve_interval=cam_curve_interval
    )


# ----------------------------------------------------------------------------------------------------- the loop


def _checkpoint_meta(model: Any, data: _Data, size: int, threshold: float | None, extra: dict[str, Any]) -> Any:
    from fcam_deploy.models.checkpoint import CheckpointMeta

    spec = model.spec
    return CheckpointMeta(
        kind="fcam" if hasattr(model, "decoder") else "classifier",
        arch=model.arch,
        num_classes=data.num_classes,
        class_names=data.class_names,
        input_size=(size, size),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        threshold=threshold,
        extra=extra,
    )


def _save_model(dir_: Path, model: Any, data: _Data, size: int, threshold: float | None, extra: dict[str, Any]) -> None:
    from fcam_deploy.models.checkpoint import save_checkpoint

    save_checkpoint(dir_, model, _checkpoint_meta(model, data, size, threshold, extra))


def _run(
    *,
    kind: str,
    model: nn.Module,
    trainable: list[tuple[str, nn.Parameter]],
    cfg: ClassifierTrainConfig | FCAMTrainConfig,
    size: int,
    data: _Data,
    out_dir: Path,
    step_fn: Callable[[nn.Module, dict[str, Any], int, ELBState], dict[str, torch.Tensor]],
    resume: bool,
    progress: bool,
    save_every_steps: int,
    dist_info: DistInfo,
    device: torch.device,
    num_workers: int,
    extra_meta: dict[str, Any],
) -> TrainResult:
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir = out_dir / "state"
    main = dist_info.is_main
    if main:
        clean_tmp(state_dir)
    opt = _make_optimizer(trainable, cfg.optim)
    st = TrainState(
        kind=kind,
        elb_t=getattr(getattr(cfg, "elb", None), "init_t", 1.0),
        world_size=dist_info.world_size,
        config=config_to_dict(cfg),
    )
    restored = load_latest_state(state_dir) if resume else None
    if resume and restored is None and main:
        log.warning("--resume: no training state in %s, starting from scratch", state_dir)
    if restored is not None:
        st, model_sd, opt_sd, rng = restored
        if st.kind != kind:
            raise CheckpointError(f"{state_dir} holds a {st.kind!r} run, not {kind!r}")
        if st.world_size != dist_info.world_size:
            raise CheckpointError(
                f"{state_dir} was saved with {st.world_size} processes, now {dist_info.world_size}"
                " (fix: resume with the same number of processes)"
            )
        model.load_state_dict(model_sd)
        opt.load_state_dict(opt_sd)
        torch.set_rng_state(rng)
    elif main and (out_dir / "log.jsonl").exists() and not resume and (state_dir / "LATEST").exists():
        raise ConfigError(f"{out_dir} already holds a training run (fix: pass --resume or choose another --out)")
    logger = _JsonlLog(out_dir / "log.jsonl", st.step if restored is not None else None) if main else None
    train_ds = _IndexedItems(data.train)
    ddp_model: nn.Module = model
    if dist_info.active and dist_info.world_size > 1:
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            convert_sync_batchnorm(model)
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    elb = ELBState(st.elb_t)
    best_dir, last_dir = out_dir / "best", out_dir / "last"

    def snapshot() -> None:
        st.elb_t = elb.t
        if main:
            save_state(state_dir, st, model.state_dict(), opt)

    def do_validate(epoch: int) -> None:
        metrics = validate(model, data, kind if kind == "fcam" else "cam", device, cfg.val_curve_interval)
        value = float(metrics[cfg.select_metric])
        bt = metrics.get("best_threshold") or {}
        # tau stored in the checkpoint: the v1 optimum for MaxBoxAcc selection, else the IoU-50 V2 optimum.
        thr = bt.get("MaxBoxAcc") if cfg.select_metric == "MaxBoxAcc" else bt.get("50", bt.get("MaxBoxAcc"))
        thr = float(thr) if thr is not None else None
        rec = {
            "type": "val",
            "epoch": epoch,
            "step": st.step,
            "tau": thr,
            **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        }
        st.history.append(rec)
        if logger:
            logger.write(rec)
        if st.best_value is None or value > st.best_value:
            st.best_value, st.best_epoch, st.best_threshold = value, epoch, thr
            if main:
                _save_model(
                    best_dir,
                    model,
                    data,
                    size,
                    thr,
                    {**extra_meta, "epoch": epoch, "val": rec, "select_metric": cfg.select_metric},
                )

    if restored is None:
        if kind == "fcam":
            do_validate(0)  # epoch 0 = the untrained decoder takes part in the selection (spec §2.7)
        snapshot()
    n_train = len(train_ds)
    from tqdm import tqdm

    while st.epoch < cfg.epochs:
        epoch = st.epoch
        train_ds.set_epoch(epoch + 1)
        batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, epoch + 1, dist_info.world_size)
        _set_lr(opt, cfg.optim, epoch)
        ddp_model.train()
        todo = [_rank_slice(b, dist_info.rank, dist_info.world_size) for b in batches[st.batch_in_epoch :]]
        loader = torch.utils.data.DataLoader(train_ds, batch_sampler=todo, num_workers=num_workers, collate_fn=_collate)
        bar = tqdm(
            total=len(batches),
            initial=st.batch_in_epoch,
            desc=f"{kind} epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and main),
            leave=False,
            dynamic_ncols=True,
        )
        sums: dict[str, float] = {}
        nb = 0
        for batch in loader:
            losses = step_fn(ddp_model, batch, epoch + 1, elb)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            vals = {k: float(v.detach()) for k, v in losses.items()}
            _finite(vals, f"epoch {epoch + 1} step {st.step + 1}")
            st.step += 1
            st.batch_in_epoch += 1
            nb += 1
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{vals['loss']:.4f}")
            if logger:
                logger.write({"type": "step", "epoch": epoch + 1, "step": st.step, **vals})
            if save_every_steps and st.step % save_every_steps == 0 and st.batch_in_epoch < len(batches):
                snapshot()
        bar.close()
        st.epoch += 1
        st.batch_in_epoch = 0
        if kind == "fcam":
            elb.step_epoch(cfg.elb)  # type: ignore[union-attr]
        st.elb_t = elb.t
        if logger:
            logger.write(
                {
                    "type": "epoch",
                    "epoch": st.epoch,
                    "step": st.step,
                    "elb_t": elb.t,
                    "lr": opt.param_groups[0]["lr"],
                    **{f"mean_{k}": v / max(nb, 1) for k, v in sums.items()},
                }
            )
        if (st.epoch % max(getattr(cfg, "val_every", 1), 1) == 0) or st.epoch == cfg.epochs:
            do_validate(st.epoch)
        snapshot()
    if main:
        _save_model(last_dir, model, data, size, st.best_threshold, {**extra_meta, "epoch": st.epoch})
        summary = {
            "kind": kind,
            "best_epoch": st.best_epoch,
            "best_value": st.best_value,
            "select_metric": cfg.select_metric,
            "best_threshold": st.best_threshold,
            "steps": st.step,
            "seconds": time.perf_counter() - t0,
            "history": [h for h in st.history if h["type"] == "val"],
        }
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if dist_info.active and dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has written best/ and last/ before any rank returns
    best_rec = next((h for h in st.history if h["type"] == "val" and h["epoch"] == st.best_epoch), {})
    return TrainResult(
        out_dir, best_dir, last_dir, int(st.best_epoch or 0), best_rec, st.step, time.perf_counter() - t0
    )


# ------------------------------------------------------------------------------------------------ public stages


def _device(device: str | None, dist_info: DistInfo) -> torch.device:
    if device:
        d = torch.device(device)
    else:
        d = (
            torch.device("cuda", dist_info.rank % max(torch.cuda.device_count(), 1))
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if d.type == "cuda":
        torch.cuda.set_device(d)
    return d


def train_classifier(
    cfg: ClassifierTrainConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    pretrained: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    save_every_steps: int = 0,
    device: str | None = None,
    num_workers: int = 0,
) -> TrainResult:
    """Stage 1: train ``cfg.arch`` + GAP + linear with cross-entropy; select on validation localization.

    Writes ``out_dir/{best,last}`` (classifier checkpoints), ``log.jsonl``, ``summary.json`` and ``state/``.
    Under ``torchrun`` every process calls this; rank 0 writes.
    """
    from fcam_deploy.models import build_classifier, get_spec

    dist_info = init_distributed()
    dev = _device(device, dist_info)
    spec = get_spec(cfg.arch)
    torch.manual_seed(cfg.seed)
    data = _open_data(Path(data_dir), cfg.input_size, cfg.resize_size, tuple(spec.mean), tuple(spec.std), cfg.seed)
    model = build_classifier(cfg.arch, data.num_classes, pretrained=pretrained).to(dev)
    if cfg.bn_momentum is not None:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.momentum = float(cfg.bn_momentum)

    def step(m: nn.Module, batch: dict[str, Any], epoch: int, elb: ELBState) -> dict[str, torch.Tensor]:
        logits = m(batch["image"].to(dev)).logits
        loss = F.cross_entropy(logits, batch["label"].to(dev))
        acc = (logits.argmax(1) == batch["label"].to(dev)).float().mean()
        return {"loss": loss, "acc": acc.detach()}

    return _run(
        kind="classifier",
        model=model,
        trainable=list(model.named_parameters()),
        cfg=cfg,
        size=cfg.input_size,
        data=data,
        out_dir=Path(out_dir),
        step_fn=step,
        resume=resume,
        progress=progress,
        save_every_steps=save_every_steps,
        dist_info=dist_info,
        device=dev,
        num_workers=num_workers,
        extra_meta={"stage": "classifier", "config": config_to_dict(cfg)},
    )


def train_fcam(
    cfg: FCAMTrainConfig,
    classifier_dir: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    save_every_steps: int = 0,
    device: str | None = None,
    num_workers: int = 0,
) -> TrainResult:
    """Stage 2: frozen classifier from ``classifier_dir`` + U-Net decoder trained with seeds + CRF + ASC.

    Writes ``out_dir/{best,last}`` (F-CAM checkpoints, threshold = validation-optimal tau of the selected epoch),
    ``log.jsonl``, ``summary.json`` and ``state/``.
    """
    from fcam_deploy.models import FCAM
    from fcam_deploy.models.checkpoint import load_checkpoint

    dist_info = init_distributed()
    dev = _device(device, dist_info)
    clf, meta = load_checkpoint(Path(classifier_dir))
    if getattr(meta, "kind", "classifier") != "classifier" or isinstance(clf, FCAM):
        raise CheckpointError(f"{classifier_dir} is a {meta.kind!r} checkpoint; `fcam train fcam` needs a classifier")
    size = int(meta.input_size[0])
    torch.manual_seed(cfg.seed)
    data = _open_data(Path(data_dir), size, cfg.resize_size, tuple(meta.mean), tuple(meta.std), cfg.seed)
    if data.num_classes != meta.num_classes:
        raise ConfigError(f"classifier has {meta.num_classes} classes, dataset {data_dir} has {data.num_classes}")
    model = FCAM(clf).to(dev)
    names = {id(p) for p in model.trainable_parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if id(p) in names]

    def step(m: nn.Module, batch: dict[str, Any], epoch: int, elb: ELBState) -> dict[str, torch.Tensor]:
        x = batch["image"].to(dev)
        y = batch["label"].to(dev)
        out = m(x, classes=y)
        with torch.no_grad():
            cam = normalize_cam(out.cam.float())
            up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            gens = [
                torch.Generator().manual_seed(sample_generator_seed(cfg.seed, epoch, int(i), "seeds"))
                for i in batch["index"]
            ]
            seeds = sample_seeds(up, gens, cfg.seeds)
            norm = None
            if dist_info.active and dist_info.world_size > 1:
                import torch.distributed as dist

                n_lab = (seeds != -255).sum().to(torch.float64).reshape(1)
                dist.all_reduce(n_lab)
                norm = float(n_lab) / dist_info.world_size
        parts = fcam_loss(
            out.seg_logits,
            seeds,
            batch["raw"].to(dev),
            seed_lambda=cfg.seed_lambda,
            crf=cfg.crf,
            elb_t=elb.t,
            size_lambda=cfg.elb.lam,
            seed_normalizer=norm,
        )
        return {
            "loss": parts.total,
            "seed": parts.seed.detach(),
            "crf": parts.crf.detach(),
            "size": parts.size.detach(),
        }

    return _run(
        kind="fcam",
        model=model,
        trainable=trainable,
        cfg=cfg,
        size=size,
        data=data,
        out_dir=Path(out_dir),
        step_fn=step,
        resume=resume,
        progress=progress,
        save_every_steps=save_every_steps,
        dist_info=dist_info,
        device=dev,
        num_workers=num_workers,
        extra_meta={"stage": "fcam", "config": config_to_dict(cfg), "classifier": Path(classifier_dir).resolve().name},
    )  # no absolute path shipped
