"""``fcam localize``: localize a whole image collection into one Parquet file (local or on Ray Data)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "localize",
        help="localize every image of a folder or list into one Parquet file (local or Ray; resumable)",
        description=(
            "Localize every image of a folder (recursively) or of a text file listing paths, and write one Parquet "
            "row per image: image (path relative to the input root), width, height, class_index, class_name, score, "
            "boxes ([[x0, y0, x1, y1], ...] in original pixels), tau, model_sha256, map_file, error. An unreadable "
            "image becomes a row with the reason in 'error'. Rows are sorted by image; rows are committed as the "
            "job runs, so --resume continues a killed job and gives the same file as an uninterrupted run. "
            "--engine ray runs Ray Data (parallel decoding, a pool of Localizer actors); it needs the scale extra: "
            'pip install "fcam-deploy[scale]".'
        ),
    )
    p.add_argument("--model", type=Path, required=True, help=".onnx, TensorRT .plan or checkpoint directory")
    p.add_argument("--images", type=Path, required=True, help="folder of images, or a text file of paths")
    p.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="where to run (default local)")
    p.add_argument("--address", default=None, help="Ray cluster to join (ray engine; default: start a local one)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="Localizer actors (ray; default one per CPU with --threads 1, one per GPU for GPU actors)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per Localizer (default: ray 1; local the CPUs the decoders leave)",
    )
    p.add_argument(
        "--decode-workers", type=int, default=1, help="local engine: threads decoding ahead of the model (default 1)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per predict call (default 16)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--plugins", type=Path, default=None, help="custom-op / plugin library for custom-op graphs")
    p.add_argument("--max-boxes", type=int, default=8, help="boxes kept per image (default 8)")
    p.add_argument(
        "--save-maps",
        type=Path,
        default=None,
        help="also save each map as DIR/<image>.npy (float32, original size, in [0, 1])",
    )
    p.add_argument("--resume", action="store_true", help="continue OUT: skip images that already have a row")
    p.add_argument("--retry-errors", action="store_true", help="with --resume: localize error rows again")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--commit-every", type=int, default=256, help="rows per committed part (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.scale.localize import LocalizeConfig, localize

    if not args.verbose:  # Ray's own INFO lines (execution plans, "Started Serve", ...) only with -v
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)

    cfg = LocalizeConfig(
        model=args.model,
        images=args.images,
        out=args.out,
        engine=args.engine,
        address=args.address,
        num_cpus=args.num_cpus,
        actors=args.actors,
        threads=args.threads,
        decode_workers=args.decode_workers,
        batch_size=args.batch_size,
        backend=args.backend,
        device=args.device,
        plugin_library=args.plugins,
        max_boxes=args.max_boxes,
        save_maps=args.save_maps,
        resume=args.resume,
        overwrite=args.overwrite,
        retry_errors=args.retry_errors,
        commit_every=args.commit_every,
        progress=not args.no_progress,
    )
    summary = localize(cfg)
    print(json.dumps(summary.to_dict()))
    return 0
