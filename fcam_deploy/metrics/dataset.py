"""Whole-dataset evaluation: saved or in-memory maps + WSOL metadata -> MaxBoxAcc / MaxBoxAccV2 / PxAP.

Maps live in the 224 x 224 frame; GT boxes are scaled into it with ``int(x * 224 / W)``; GT masks are resized
into it with nearest neighbour. Saved maps follow the reference layout ``<root>/<image_id>.npy`` (the image
extension kept, e.g. ``val/a/1.jpg.npy``) so the reference code can score them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fcam_deploy.errors import InputError, MapError
from fcam_deploy.metrics.evaluators import BoxEvaluator, Engine, MaskEvaluator, load_gt_mask
from fcam_deploy.metrics.protocol import RESIZE_LENGTH, resize_box, validate_scoremap

__all__ = ["MetadataLike", "evaluate_maps", "load_map", "map_path", "save_map"]


class MetadataLike(Protocol):
    """What :func:`evaluate_maps` reads of ``fcam_deploy.data.WSOLMetadata``."""

    image_ids: list[str]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[tuple[int, int, int, int]]]
    masks: dict[str, list[str]]
    ignore: dict[str, str | None]


def map_path(root: str | Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy`` (numpy's ``np.save`` naming, image extension kept)."""
    rel = Path(image_id + ".npy")
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"image id {image_id!r} escapes the map folder (absolute path or '..')")
    return Path(root) / rel


def load_map(root: str | Path, image_id: str, size: int = RESIZE_LENGTH) -> np.ndarray:
    """Load and validate ``<root>/<image_id>.npy``.

    Returns:
        float64 (size, size) in [0, 1].

    Raises:
        MapError: missing file, not a .npy array (pickles are refused), wrong shape, not float, NaN, outside [0, 1].
    """
    path = map_path(root, image_id)
    if not path.is_file():
        raise MapError(f"{path}: score map missing for image {image_id!r} (expected <maps>/<image_id>.npy)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MapError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise MapError(f"{path}: expected a single array, got {type(arr).__name__}")
    if arr.shape != (size, size):
        raise MapError(
            f"{path}: score map must be {size}x{size} (the evaluation frame), got shape {arr.shape}; "
            f"resize it to {size}x{size} before saving"
        )
    return validate_scoremap(arr, str(path))


def save_map(root: str | Path, image_id: str, scoremap: np.ndarray) -> Path:
    """Save a map as ``<root>/<image_id>.npy`` (float32, parents created). Returns the path."""
    s = validate_scoremap(np.asarray(scoremap), image_id)
    path = map_path(root, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, s.astype(np.float32))
    return path


def evaluate_maps(
    maps: Mapping[str, np.ndarray] | Callable[[str], np.ndarray],
    meta: MetadataLike,
    mask_root: str | Path | None = None,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    engine: Engine = "auto",
    predictions: Mapping[str, tuple[int, Sequence[int]]] | None = None,
    image_ids: Iterable[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate 224 x 224 maps of a WSOL set.

    Args:
        maps: image id -> float (224, 224) map in [0, 1], as a mapping or a loader function.
        meta: the set's metadata (``fcam_deploy.data.WSOLMetadata``): ids, sizes, boxes (original pixels),
            masks and ignore paths (relative to ``mask_root``).
        mask_root: folder the mask paths are relative to; PxAP is computed only when it is given and the images
            have masks.
        cam_curve_interval: threshold step (0.01 or 0.001).
        iou_thresholds: percent.
        engine: box engine ("auto", "fast", "reference").
        predictions: image id -> (GT label, classes ordered by score) for top-1/top-5 localization.
        image_ids: subset / order of ids to evaluate (default: all of ``meta.image_ids``).
        progress: show a tqdm bar.

    Returns:
        ``BoxEvaluator.compute()`` keys with ``PxAP`` filled in; box keys are None when the set has no boxes,
        ``PxAP`` is None without masks.
    """
    ids = list(meta.image_ids if image_ids is None else image_ids)
    if not ids:
        raise InputError("no image to evaluate")
    get = maps.__getitem__ if isinstance(maps, Mapping) else maps
    with_boxes = [i for i in ids if meta.boxes.get(i)]
    if with_boxes and len(with_boxes) != len(ids):
        missing = next(i for i in ids if not meta.boxes.get(i))
        raise InputError(f"image {missing!r} has no GT box while others do: box metrics need a box for every image")
    with_mask_list = [i for i in ids if meta.masks.get(i)]
    if with_mask_list and len(with_mask_list) != len(ids):
        missing = next(i for i in ids if not meta.masks.get(i))
        raise InputError(f"image {missing!r} has no GT mask while others do: PxAP needs a mask for every image")
    with_masks = mask_root is not None and bool(with_mask_list)
    box = BoxEvaluator(iou_thresholds=iou_thresholds, cam_curve_interval=cam_curve_interval, engine=engine) if with_boxes else None
    mask = MaskEvaluator(cam_curve_interval=cam_curve_interval) if with_masks else None
    it: Iterable[str] = ids
    if progress:
        from tqdm import tqdm

        it = tqdm(ids, desc="evaluate", unit="map")
    for image_id in it:
        try:
            scoremap = get(image_id)
        except KeyError as exc:
            raise MapError(f"no score map for image {image_id!r}") from exc
        s = validate_scoremap(np.asarray(scoremap) if not isinstance(scoremap, np.ndarray) else scoremap, image_id)
        if s.shape != (RESIZE_LENGTH, RESIZE_LENGTH):
            raise MapError(f"score map of {image_id!r} must be {RESIZE_LENGTH}x{RESIZE_LENGTH}, got {s.shape}")
        if box is not None:
            size = meta.sizes.get(image_id)
            if size is None:
                raise InputError(f"image {image_id!r} has boxes but no size in image_sizes.txt")
            gt = [resize_box(b, size) for b in meta.boxes[image_id]]
            label = preds = None
            if predictions is not None:
                label, preds = predictions[image_id]
            box.accumulate(s, gt, label=label, preds=preds)
        if mask is not None:
            assert mask_root is not None
            root = Path(mask_root)
            ign = meta.ignore.get(image_id)
            gm = load_gt_mask([root / p for p in meta.masks[image_id]], root / ign if ign else None)
            mask.accumulate(s, gm)
    if box is not None:
        res = box.compute()
    else:
        res = {
            "MaxBoxAcc": None,
            "MaxBoxAccV2": None,
            "PxAP": None,
            "per_iou": None,
            "per_iou_v1": None,
            "best_threshold": {},
            "num_images": len(ids),
            "top1_loc": None,
            "top5_loc": None,
            "cam_curve_interval": float(cam_curve_interval),
        }
    if mask is not None:
        res["PxAP"] = mask.compute()["PxAP"]
    res["num_images"] = len(ids)
    return res
