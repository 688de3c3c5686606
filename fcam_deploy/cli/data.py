"""`fcam data synth` (write the built-in synthetic WSOL set) and `fcam data check` (validate a dataset)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fcam_deploy.errors import ConfigError, MetadataError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="dataset tools: synthetic WSOL set, dataset validation")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    s = dsub.add_parser(
        "synth",
        help="write the built-in synthetic WSOL set (class-shared body, class-specific head)",
        description="Write a synthetic WSOL dataset in the wsolevaluation format: DIR/images/<split>/, "
        "DIR/metadata/<split>/{image_ids,class_labels,image_sizes,localization,localization_masks}.txt, "
        "DIR/masks/<split>/, DIR/metadata/class_names.txt. Same arguments -> byte-identical files.",
    )
    s.add_argument("--out", required=True, help="dataset folder to create")
    s.add_argument("--classes", type=int, default=None, help="number of classes (1..10, default 8)")
    s.add_argument("--train", type=int, default=3000, help="training images (default 3000)")
    s.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    s.add_argument("--test", type=int, default=500, help="test images (default 500)")
    s.add_argument("--size", type=int, default=None, help="image side in pixels (default 224)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--format", choices=("png", "jpg"), default=None, help="image file format (default png)")
    s.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON object of SynthConfig fields (design knobs); --classes/--size/--format override it",
    )
    s.add_argument("--workers", type=int, default=1, help="rendering processes (default 1; output is identical)")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_synth)

    c = dsub.add_parser(
        "check",
        help="validate a dataset in the wsolevaluation layout (metadata, and optionally every image/mask)",
        description="Load DIR/metadata/<split>/ with the strict reader (typed errors naming file and line); "
        "with --decode also decode every image and mask with the safe loaders.",
    )
    c.add_argument("--data", required=True, type=Path, help="dataset folder (holding metadata/ and images/)")
    c.add_argument(
        "--split",
        action="append",
        default=None,
        help="split to check (repeatable; default: every folder under metadata/)",
    )
    c.add_argument("--decode", action="store_true", help="also decode every image and mask")
    c.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit (width*height)")
    c.set_defaults(func=_check)


def _synth(args: argparse.Namespace) -> int:
    from fcam_deploy.data.synth import SynthConfig, generate_synthetic

    for name in ("train", "val", "test"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name}={getattr(args, name)}: need a count >= 0")
    fields: dict[str, object] = {}
    if args.config is not None:
        try:
            loaded = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--config {args.config}: cannot read a JSON object ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {args.config}: expected a JSON object of SynthConfig fields")
        # a plain object of SynthConfig fields, or a dataset's metadata/synth_config.json record
        record = loaded.get("config") if loaded.get("generator") == "fcam_deploy.data.synth" else loaded
        if not isinstance(record, dict):
            raise ConfigError(f"--config {args.config}: 'config' must be a JSON object")
        fields.update(record)
    for flag, key in (("classes", "num_classes"), ("size", "size"), ("format", "image_format")):
        if getattr(args, flag) is not None:
            fields[key] = getattr(args, flag)
    cfg = SynthConfig.from_json_dict(fields)
    t0 = time.perf_counter()
    summary = generate_synthetic(
        args.out,
        cfg,
        {"train": args.train, "val": args.val, "test": args.test},
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        workers=args.workers,
    )
    dt = time.perf_counter() - t0
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(
        f"wrote {summary.root}: {counts} images, {summary.num_classes} classes, {cfg.size} px, "
        f"seed {args.seed} in {dt:.1f} s"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from fcam_deploy.data.images import DEFAULT_MAX_PIXELS, load_image_rgb, load_mask
    from fcam_deploy.data.metadata import open_dataset

    root: Path = args.data
    mroot = root / "metadata"
    if not mroot.is_dir():
        raise ConfigError(f"{root}: no metadata/ folder (fix: point --data at a dataset in the wsolevaluation layout)")
    splits = args.split or sorted(p.name for p in mroot.iterdir() if p.is_dir())
    if not splits:
        raise ConfigError(f"{mroot}: no split folders")
    limit = args.max_pixels if args.max_pixels is not None else DEFAULT_MAX_PIXELS
    for split in splits:
        meta = open_dataset(root, split)
        n_boxes = sum(len(v) for v in meta.boxes.values())
        n_masks = sum(len(v) for v in meta.masks.values())
        if args.decode:
            for image_id in meta.image_ids:
                img = load_image_rgb(meta.image_path(image_id), max_pixels=limit)
                if meta.sizes and img.size != meta.sizes[image_id]:
                    raise MetadataError(
                        meta.metadata_dir / "image_sizes.txt",
                        None,
                        f"{image_id!r} is {img.size[0]}x{img.size[1]} on disk but listed as "
                        f"{meta.sizes[image_id][0]}x{meta.sizes[image_id][1]}",
                        "write the decoded width,height",
                    )
                for path in [*meta.mask_paths(image_id), meta.ignore_path(image_id)]:
                    if path is not None:
                        load_mask(path, max_pixels=limit)
        print(
            f"{split}: {len(meta)} images, {meta.num_classes} classes, {n_boxes} boxes, {n_masks} masks"
            f"{', all decoded' if args.decode else ''}: ok"
        )
    return 0
