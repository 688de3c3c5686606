"""`fcam train classifier|fcam`: stage 1 and stage 2 training (see fcam_deploy.train).

Examples::

    fcam train classifier --data DIR --arch resnet50 --out runs/cls [--config cub_resnet50] [--resume]
    fcam train fcam --classifier runs/cls/best --data DIR --out runs/fcam [--config cub_resnet50] [--resume]
    torchrun --nproc_per_node 2 -m fcam_deploy train fcam ...   # DistributedDataParallel (gloo on CPU)

Outputs under --out: ``best/`` (selected checkpoint, with the validation-optimal tau), ``last/``, ``log.jsonl``
(one JSON record per step / epoch / validation), ``summary.json`` and ``state/`` (what ``--resume`` reads).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fcam_deploy.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a CAM classifier (stage 1) or an F-CAM decoder (stage 2)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st = p.add_subparsers(dest="stage", metavar="STAGE", required=True)

    def common(q: argparse.ArgumentParser, default_cfg: str) -> None:
        q.add_argument("--data", type=Path, required=True, help="dataset folder (wsolevaluation layout)")
        q.add_argument("--out", type=Path, required=True, help="run folder (created)")
        q.add_argument(
            "--config", default=default_cfg, help=f"built-in config name or JSON path (default {default_cfg})"
        )
        q.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=JSON",
            help="override a config value, e.g. --set epochs=3 --set 'crf={\"lam\": 4e-9}'",
        )
        q.add_argument("--epochs", type=int, help="shortcut for --set epochs=N")
        q.add_argument("--batch-size", type=int, help="shortcut for --set batch_size=N (global batch)")
        q.add_argument("--seed", type=int, help="shortcut for --set seed=N")
        q.add_argument("--resume", action="store_true", help="continue from OUT/state")
        q.add_argument("--save-every-steps", type=int, default=0, help="also save the state every N steps")
        q.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
        q.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")

    c = st.add_parser("classifier", help="stage 1: backbone + GAP + linear, cross-entropy")
    common(c, "cub_resnet50")
    c.add_argument("--arch", help="backbone (default from the config)")
    c.add_argument("--input-size", type=int, help="crop size (default from the config)")
    c.add_argument("--pretrained", type=Path, help="local pretrained trunk weights (.pth / .safetensors)")
    c.set_defaults(func=_run_classifier, needs_extra="train")
    f = st.add_parser("fcam", help="stage 2: F-CAM decoder on a frozen classifier")
    common(f, "cub_resnet50")
    f.add_argument("--classifier", type=Path, required=True, help="stage-1 checkpoint folder (e.g. RUN/best)")
    f.set_defaults(func=_run_fcam, needs_extra="train")


def _overrides(args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=JSON")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    for key, val in (("epochs", args.epochs), ("batch_size", args.batch_size), ("seed", args.seed), *extra.items()):
        if val is not None:
            out[key] = val
    return out


def _report(res: Any) -> int:
    print(
        json.dumps(
            {
                "best": str(res.best_dir),
                "last": str(res.last_dir),
                "best_epoch": res.best_epoch,
                "best_val": res.best_metrics,
                "steps": res.steps,
                "seconds": round(res.seconds, 1),
            },
            indent=2,
        )
    )
    return 0


def _run_classifier(args: argparse.Namespace) -> int:
    from fcam_deploy.train import load_train_config, train_classifier

    cfg = load_train_config(
        "classifier", args.config, _overrides(args, {"arch": args.arch, "input_size": args.input_size})
    )
    res = train_classifier(
        cfg,
        args.data,
        args.out,
        pretrained=args.pretrained,
        resume=args.resume,
        progress=not args.no_progress,
        save_every_steps=args.save_every_steps,
        device=args.device,
        num_workers=args.workers,
    )
    return _report(res)


def _run_fcam(args: argparse.Namespace) -> int:
    from fcam_deploy.train import load_train_config, train_fcam

    cfg = load_train_config("fcam", args.config, _overrides(args, {}))
    res = train_fcam(
        cfg,
        args.classifier,
        args.data,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        save_every_steps=args.save_every_steps,
        device=args.device,
        num_workers=args.workers,
    )
    return _report(res)
