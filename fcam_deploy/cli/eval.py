"""`fcam eval`: localization maps of a checkpoint on a WSOL split, scored with the exact protocol."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fcam_deploy.errors import ConfigError

__all__ = ["register"]

_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "lpcam", "fcam")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint's maps (MaxBoxAcc, MaxBoxAccV2, PxAP, top-1/5 loc) on a dataset split",
        description="Run the checkpoint at its input size on every image of DIR/metadata/<split>, resize the "
        "localization method's maps to 224x224 and score them exactly as wsolevaluation (see `fcam score`); "
        "`fcam demo` and `fcam bench` score a checkpoint the same way. --save-maps writes them as <image_id>.npy "
        "(+ predictions.json), so `fcam score` on that folder reproduces the numbers.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (model.safetensors + config.json)")
    p.add_argument("--data", required=True, type=Path, help="dataset root (metadata/<split>/, images/, masks/)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--method", default="cam", choices=_METHODS, help="localization method (default cam)")
    p.add_argument(
        "--classes",
        choices=("gt", "pred"),
        default="gt",
        help="explain the ground-truth class (GT-known, the protocol; default) or the top-1 prediction",
    )
    p.add_argument("--json", required=True, type=Path, help="output JSON file")
    p.add_argument("--save-maps", type=Path, default=None, help="also save maps as <DIR>/<image_id>.npy")
    p.add_argument("--cam-curve-interval", type=float, default=0.01, help="CAM threshold step (default 0.01)")
    p.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70], help="IoU thresholds in percent")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--lpcam-prototypes", type=Path, default=None, help="fitted LPCAM prototypes (method lpcam)")
    p.add_argument("--engine", choices=("auto", "fast", "reference"), default="auto", help="box engine")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, needs_extra="train")


def _checkpoint_digest(checkpoint: Path) -> str | None:
    try:
        cfg = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sha = cfg.get("weights_sha256") if isinstance(cfg, dict) else None
    return sha if isinstance(sha, str) else None


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.cli._paths import output_dir, output_file, write_json
    from fcam_deploy.data import open_dataset
    from fcam_deploy.metrics.model_eval import evaluate_model
    from fcam_deploy.models import load_checkpoint

    output_file(args.json, "--json")
    if args.save_maps is not None:
        output_dir(args.save_maps, "--save-maps")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: need >= 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: need >= 1")
    method_kw = {}
    if args.method == "lpcam":
        if args.lpcam_prototypes is None:
            raise ConfigError("--method lpcam needs --lpcam-prototypes FILE (fit them with the cams API: fit_lpcam)")
        method_kw["prototypes"] = args.lpcam_prototypes
    elif args.lpcam_prototypes is not None:
        raise ConfigError("--lpcam-prototypes only applies to --method lpcam")
    t0 = time.perf_counter()
    model, meta = load_checkpoint(args.checkpoint, map_location=args.device)
    data = open_dataset(args.data, args.split)
    res = evaluate_model(
        model,
        data,
        args.method,
        classes=args.classes,
        mean=meta.mean,
        std=meta.std,
        cam_curve_interval=args.cam_curve_interval,
        iou_thresholds=tuple(args.iou),
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        save_maps=args.save_maps,
        engine=args.engine,
        limit=args.limit,
        method_kw=method_kw,
        progress=not args.no_progress,
        input_size=(int(meta.input_size[0]), int(meta.input_size[1])),
        run_info={
            "checkpoint": args.checkpoint.name,
            "checkpoint_sha256": _checkpoint_digest(args.checkpoint),
            "data": args.data.resolve().name,
            "split": args.split,
        },
    )
    res["checkpoint"] = str(args.checkpoint)
    res["split"] = args.split
    res["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(args.json, res)
    shown = {
        k: (round(v, 2) if isinstance(v, float) else v)
        for k, v in res.items()
        if k in ("method", "MaxBoxAcc", "MaxBoxAccV2", "PxAP", "num_images")
    }
    print(json.dumps(shown))
    return 0
