"""`fcam score`: score saved localization maps with the exact WSOL protocol (MaxBoxAcc, MaxBoxAccV2, PxAP).

Maps are ``<maps>/<image_id>.npy`` (the image id keeps its extension, e.g. ``test/a/1.png.npy``), 224 x 224, float
in [0, 1] -- the layout wsolevaluation reads and ``fcam eval --save-maps`` writes. A folder written by ``fcam eval``
carries ``maps_manifest.json``: it is scored only when that manifest says the run finished, covers every image of
the metadata and every map's SHA-256 matches (no map of another run); ``--no-manifest`` scores folders of other
tools without that check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fcam_deploy.cli._paths import output_file, refuse_overwriting_inputs, write_json
from fcam_deploy.errors import ConfigError, InputError

__all__ = ["register", "resolve_metadata", "write_json_atomic"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "score",
        help="score saved maps (<image_id>.npy) with MaxBoxAcc / MaxBoxAccV2 / PxAP",
        description="Score saved 224x224 localization maps <maps>/<image_id>.npy against wsolevaluation metadata, "
        "exactly as wsolevaluation does (224 frame, uint8 truncation, int(t*max) thresholds, all contours for "
        "MaxBoxAccV2, largest contour for MaxBoxAcc, pooled-histogram PxAP). Results in percent; a metric that "
        "does not apply (no boxes / no masks) is null.",
    )
    p.add_argument("--maps", required=True, type=Path, help="folder of <image_id>.npy maps")
    p.add_argument(
        "--metadata",
        required=True,
        type=Path,
        help="metadata split folder (image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt), or a "
        "dataset root with metadata/<split>/ (then give --split)",
    )
    p.add_argument("--split", default=None, help="split name when --metadata is a dataset root")
    p.add_argument("--masks", type=Path, default=None, help="mask root the mask paths are relative to (PxAP)")
    p.add_argument("--cam-curve-interval", type=float, default=0.01, help="CAM threshold step (default 0.01)")
    p.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70], help="IoU thresholds in percent")
    p.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="optional JSON {image_id: [classes, most probable first]} for top-1/top-5 localization "
        "(fcam eval --save-maps writes it as predictions.json)",
    )
    p.add_argument("--engine", choices=("auto", "fast", "reference"), default="auto", help="box engine")
    p.add_argument("--json", required=True, type=Path, help="output JSON file")
    p.add_argument(
        "--no-manifest",
        action="store_true",
        help="score a folder without the maps_manifest.json of `fcam eval --save-maps` (maps written by another "
        "tool): then nothing checks that the maps are one complete run. A folder whose manifest says the run did "
        "not finish is refused either way",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, needs_extra="train")


def resolve_metadata(metadata: Path, split: str | None, masks: Path | None) -> tuple[Path, Path, Path | None]:
    """(split metadata folder, image root, mask root) from ``--metadata`` / ``--split`` / ``--masks``."""
    if (metadata / "image_ids.txt").is_file():
        if split is not None:
            raise ConfigError(f"--split {split!r} given, but {metadata} is already a split folder")
        return metadata, metadata, masks
    if (metadata / "metadata").is_dir():
        if split is None:
            have = sorted(p.name for p in (metadata / "metadata").iterdir() if p.is_dir())
            raise ConfigError(f"{metadata} is a dataset root: give --split (one of {have})")
        mroot = masks if masks is not None else (metadata / "masks" if (metadata / "masks").is_dir() else None)
        return metadata / "metadata" / split, metadata / "images", mroot
    raise ConfigError(
        f"--metadata {metadata}: no image_ids.txt there and no metadata/ folder (pass the split folder, e.g. "
        "metadata/CUB/test, or a dataset root with --split)"
    )


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write strict JSON to ``path`` atomically (never a half-written file; NaN refused)."""
    write_json(path, obj)


def load_predictions(path: Path) -> dict[str, list[int]]:
    """Read ``{image_id: [class, ...]}`` (most probable first)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read predictions JSON ({exc})") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and v and all(isinstance(c, int) for c in v) for v in raw.values()
    ):
        raise InputError(f"{path}: expected {{image_id: [class, ...]}} with at least one int class per image")
    return {str(k): [int(c) for c in v] for k, v in raw.items()}


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.data import load_metadata
    from fcam_deploy.metrics import evaluate_maps, load_map
    from fcam_deploy.metrics.dataset import (
        MANIFEST_FILE,
        check_file_digest,
        check_image_sizes,
        check_maps_folder,
    )
    from fcam_deploy.metrics.model_eval import PREDICTIONS_FILE

    output_file(args.json, "--json")
    if not args.maps.is_dir():
        raise ConfigError(f"--maps {args.maps}: not a folder")
    inputs = [args.maps / MANIFEST_FILE, *([args.predictions] if args.predictions is not None else [])]
    refuse_overwriting_inputs(args.json, inputs, "--json")
    mdir, iroot, mroot = resolve_metadata(args.metadata, args.split, args.masks)
    meta = load_metadata(mdir, iroot, mroot, check_files=False)
    manifest = check_maps_folder(args.maps, meta.image_ids, require_manifest=not args.no_manifest, split=args.split)
    digests: dict[str, str] = manifest["maps"] if manifest is not None else {}
    check_image_sizes(meta, meta.image_ids, iroot)
    predictions = None
    if args.predictions is not None:
        if manifest is not None and args.predictions.resolve() == (args.maps / PREDICTIONS_FILE).resolve():
            check_file_digest(args.predictions, manifest, PREDICTIONS_FILE)
        preds = load_predictions(args.predictions)
        missing = [i for i in meta.image_ids if i not in preds]
        if missing:
            raise InputError(f"{args.predictions}: no prediction for image {missing[0]!r} ({len(missing)} missing)")
        predictions = {i: (meta.labels[i], preds[i]) for i in meta.image_ids}
    if meta.masks and mroot is None:
        print(
            "fcam score: note: the metadata lists masks but no --masks root was given: PxAP is skipped", file=sys.stderr
        )
    res = evaluate_maps(
        lambda image_id: load_map(args.maps, image_id, sha256=digests.get(image_id)),
        meta,
        mask_root=mroot if meta.masks else None,
        cam_curve_interval=args.cam_curve_interval,
        iou_thresholds=args.iou,
        engine=args.engine,
        predictions=predictions,
        progress=not args.no_progress,
    )
    write_json_atomic(args.json, res)
    shown = {
        k: (round(v, 2) if isinstance(v, float) else v)
        for k, v in res.items()
        if k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP", "num_images")
    }
    print(json.dumps(shown))
    return 0
