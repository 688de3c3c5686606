"""Evaluate a model's localization maps on a WSOL split (the engine behind ``fcam eval``).

Imports torch, the data pipeline and the CAM methods lazily (inside :func:`evaluate_model`), so importing
:mod:`fcam_deploy.metrics` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fcam_deploy.errors import InputError
from fcam_deploy.metrics.dataset import MapsWriter, check_image_sizes, mask_file
from fcam_deploy.metrics.evaluators import (
    BoxEvaluator,
    Engine,
    MaskEvaluator,
    load_gt_mask,
)
from fcam_deploy.metrics.protocol import RESIZE_LENGTH, resize_box, validate_scoremap

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from fcam_deploy.data import WSOLMetadata

__all__ = ["PREDICTIONS_FILE", "evaluate_model", "to_protocol_frame"]

#: File written next to saved maps: ``{image_id: [top-5 classes, most probable first]}`` (``fcam score
#: --predictions``).
PREDICTIONS_FILE = "predictions.json"


def to_protocol_frame(maps: Any) -> np.ndarray:
    """Maps at the model's input size -> the protocol's 224 x 224 frame, as every command scores them.

    Args:
        maps: (N, S, S) torch tensor or array of maps in [0, 1] (any float dtype, any S).

    Returns:
        float32 (N, 224, 224) in [0, 1]: bilinear resize (``F.interpolate``, align_corners=False, float32) when
        S != 224, then clipped to [0, 1]; maps already at 224 are only cast and clipped. Saving and re-scoring these
        float32 maps (``fcam score``) gives the same numbers.
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(maps).detach().to("cpu", torch.float32)
    if t.ndim != 3:
        raise InputError(f"maps must be (N, S, S), got shape {tuple(t.shape)}")
    if tuple(t.shape[1:]) != (RESIZE_LENGTH, RESIZE_LENGTH) and t.shape[0] > 0:
        t = F.interpolate(t[:, None], size=(RESIZE_LENGTH, RESIZE_LENGTH), mode="bilinear", align_corners=False)[:, 0]
    return np.clip(t.numpy(), 0.0, 1.0)


def evaluate_model(
    model: nn.Module,
    meta: WSOLMetadata,
    method: str = "cam",
    *,
    classes: Literal["gt", "pred"] = "gt",
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    cam_curve_interval: float = 0.01,
    iou_thresholds: tuple[int, ...] = (30, 50, 70),
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "cpu",
    save_maps: str | Path | None = None,
    engine: Engine = "auto",
    limit: int | None = None,
    method_kw: Mapping[str, Any] | None = None,
    progress: bool = False,
    input_size: int | tuple[int, int] | None = None,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the model at its input size on every image of ``meta``, bring ``method``'s maps to the 224 frame and
    score them.

    Args:
        model: a ``CAMClassifier`` or an ``FCAM`` (CAM-family methods then use its frozen classifier);
            ``method="fcam"`` needs an ``FCAM``.
        meta: the split (``fcam_deploy.data.open_dataset``); boxes give MaxBoxAcc/V2, masks (with
            ``meta.mask_root``) give PxAP.
        method: ``cam | gradcam | gradcampp | xgradcam | layercam | scorecam | lpcam | fcam``.
        classes: "gt" explains the ground-truth class (GT-known, the protocol), "pred" the top-1 prediction.
        mean, std: input normalisation (the checkpoint's).
        cam_curve_interval, iou_thresholds, engine: see :class:`BoxEvaluator`.
        batch_size, num_workers, device: inference settings.
        save_maps: folder to save ``<image_id>.npy`` (float32, 224 x 224) and ``predictions.json`` in the
            ``fcam score`` layout; scoring them gives the same numbers. The folder's ``maps_manifest.json``
            (:class:`~fcam_deploy.metrics.dataset.MapsWriter`) marks it incomplete from the start and complete,
            with every map's SHA-256, only at the end.
        limit: evaluate only the first N images.
        method_kw: extractor options (e.g. ``prototypes=`` for lpcam).
        progress: tqdm bar.
        input_size: side S (or ``(S, S)``) the images are resized to before the model; default the model's
            ``input_size`` (set by ``load_checkpoint`` from the checkpoint), else 224. Maps at S go to the
            protocol's 224 frame with :func:`to_protocol_frame` (so ``fcam eval``, ``fcam bench`` and
            ``fcam demo`` give one number per model).
        run_info: JSON-ready facts recorded in the maps manifest (checkpoint, dataset, split ...).

    Returns:
        The metric dict of :func:`fcam_deploy.metrics.evaluate_maps` plus ``method``, ``classes``,
        ``classification`` (``{"top1": %, "top5": %}`` or None).
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from fcam_deploy.cams import compute_maps
    from fcam_deploy.data import WSOLDataset
    from fcam_deploy.models import FCAM

    if classes not in ("gt", "pred"):
        raise InputError(f"classes must be 'gt' or 'pred', got {classes!r}")
    if method == "fcam":
        if not isinstance(model, FCAM):
            raise InputError(
                "method 'fcam' needs an F-CAM model (a checkpoint of kind 'fcam'); this one is a classifier: "
                "use a CAM-family method (cam, gradcam, ...) or train F-CAM first"
            )
        net: nn.Module = model
    else:
        net = model.classifier if isinstance(model, FCAM) else model
    ids = list(meta.image_ids)
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be >= 1, got {limit}")
        ids = ids[:limit]
    has_boxes = bool(meta.boxes)
    has_masks = bool(meta.masks) and meta.mask_root is not None
    if not has_boxes and not has_masks:
        raise InputError(f"split {meta.metadata_dir} has neither boxes nor masks (with a mask root) to evaluate")
    box = (
        BoxEvaluator(iou_thresholds=iou_thresholds, cam_curve_interval=cam_curve_interval, engine=engine)
        if has_boxes
        else None
    )
    mask = MaskEvaluator(cam_curve_interval=cam_curve_interval) if has_masks else None

    check_image_sizes(meta, ids, meta.image_root)  # image_sizes.txt scales the boxes: it must match the images
    size = _input_side(input_size if input_size is not None else getattr(model, "input_size", None))
    ds = WSOLDataset(meta, train=False, size=size, mean=mean, std=std)
    index = {i: k for k, i in enumerate(meta.image_ids)}
    subset = Subset(ds, [index[i] for i in ids])
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    it: Any = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc=f"eval {method}", unit="batch")
    net.to(device)
    writer = MapsWriter(save_maps) if save_maps is not None else None
    info = {"method": method, "classes": classes, **dict(run_info or {}), "limit": limit}
    if writer is not None:
        writer.begin(**info)
    saved_preds: dict[str, list[int]] = {}
    n_top1 = n_top5 = 0
    with_logits = True
    for batch in it:
        images = batch["image"].to(device)
        labels = batch["label"].to(torch.int64)
        cls = labels.to(device) if classes == "gt" else None
        res = compute_maps(net, images, method, classes=cls, **dict(method_kw or {}))
        if tuple(res.full.shape[1:]) != (size, size):
            raise InputError(
                f"method {method!r} returned maps of shape {tuple(res.full.shape[1:])}, expected {size}x{size}"
            )
        full = to_protocol_frame(res.full)
        top = None
        if res.logits is not None:
            k = min(5, res.logits.shape[1])
            top = res.logits.detach().float().topk(k, dim=1).indices.cpu().numpy()
        else:
            with_logits = False
        for j, image_id in enumerate(batch["image_id"]):
            s32 = full[j]  # float32 in [0, 1], as saved: scoring the saved file gives the same numbers
            s = validate_scoremap(s32, image_id)
            label = int(labels[j])
            preds = None
            if top is not None:
                preds = [int(c) for c in top[j]]
                saved_preds[image_id] = preds
                n_top1 += int(preds[0] == label)
                n_top5 += int(label in preds)
            if writer is not None:
                writer.add(image_id, s32)
            if box is not None:
                gt = [resize_box(b, meta.sizes[image_id]) for b in meta.boxes[image_id]]
                box.accumulate(s, gt, label=label if preds is not None else None, preds=preds)
            if mask is not None:
                assert meta.mask_root is not None
                ign = meta.ignore.get(image_id)
                gm = load_gt_mask(
                    [mask_file(meta.mask_root, p) for p in meta.masks[image_id]],
                    mask_file(meta.mask_root, ign) if ign else None,
                    image_size=meta.sizes.get(image_id),
                )
                mask.accumulate(s, gm)
    if writer is not None:
        if with_logits:
            writer.add_file(PREDICTIONS_FILE, json.dumps(saved_preds).encode("utf-8"))
        writer.finish(**info)
    n = len(ids)
    if box is not None:
        result = box.compute()
    else:
        result = {
            "MaxBoxAcc": None,
            "MaxBoxAccV2": None,
            "PxAP": None,
            "per_iou": None,
            "per_iou_v1": None,
            "best_threshold": {},
            "top1_loc": None,
            "top5_loc": None,
            "cam_curve_interval": float(cam_curve_interval),
        }
    if mask is not None:
        result["PxAP"] = mask.compute()["PxAP"]
    result["num_images"] = n
    result["input_size"] = [size, size]
    result["method"] = method
    result["classes"] = classes
    result["classification"] = {"top1": 100.0 * n_top1 / n, "top5": 100.0 * n_top5 / n} if with_logits else None
    return result


def _input_side(size: Any) -> int:
    if size is None:
        return RESIZE_LENGTH
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or int(size[0]) != int(size[1]):
            raise InputError(f"input_size {tuple(size)} is not square; the WSOL evaluation resizes images to S x S")
        size = size[0]
    if isinstance(size, bool) or int(size) < 1:
        raise InputError(f"input_size must be a positive side, got {size!r}")
    return int(size)
