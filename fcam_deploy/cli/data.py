"""`fcam data synth`: write the built-in synthetic WSOL dataset (images + wsolevaluation metadata)."""

from __future__ import annotations

import argparse
import time

from fcam_deploy.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="dataset tools (synthetic WSOL set)")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    s = dsub.add_parser(
        "synth",
        help="write the built-in synthetic WSOL set (class-shared body, class-specific head)",
        description="Write a synthetic WSOL dataset in the wsolevaluation format: DIR/images/<split>/, "
        "DIR/metadata/<split>/{image_ids,class_labels,image_sizes,localization,localization_masks}.txt, "
        "DIR/masks/<split>/, DIR/metadata/class_names.txt. Same arguments -> byte-identical files.",
    )
    s.add_argument("--out", required=True, help="dataset folder to create")
    s.add_argument("--classes", type=int, default=8, help="number of classes (1..10, default 8)")
    s.add_argument("--train", type=int, default=3000, help="training images (default 3000)")
    s.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    s.add_argument("--test", type=int, default=500, help="test images (default 500)")
    s.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--format", choices=("png", "jpg"), default="png", help="image file format (default png)")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from fcam_deploy.data.synth import SynthConfig, generate_synthetic

    for name in ("train", "val", "test"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name}={getattr(args, name)}: need a count >= 0")
    cfg = SynthConfig(size=args.size, num_classes=args.classes, image_format=args.format)
    t0 = time.perf_counter()
    summary = generate_synthetic(
        args.out,
        cfg,
        {"train": args.train, "val": args.val, "test": args.test},
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    dt = time.perf_counter() - t0
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(f"wrote {summary.root}: {counts} images, {summary.num_classes} classes, {args.size} px, "
          f"seed {args.seed} in {dt:.1f} s")
    return 0
