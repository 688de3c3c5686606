"""``fcam parity MODEL --data DIR --json OUT``: exported graph (ONNX Runtime CPU) vs PyTorch on a WSOL split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "parity",
        help="compare an exported .onnx (ORT CPU) with PyTorch on a dataset split (Polygraphy comparator)",
        description=(
            "Runs the checkpoint's graph in PyTorch and MODEL in ONNX Runtime (CPU) on the same uint8 batches of "
            "the split, compares logits/map (atol 1e-4), class, mask and boxes (identical except tie pixels), "
            "and MaxBoxAccV2 / PxAP. Exit code 0 when parity holds, 1 when it does not."
        ),
    )
    p.add_argument("model", type=Path, help=".onnx written by `fcam export`")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (wsolevaluation layout)")
    p.add_argument("--json", type=Path, required=True, help="report file to write")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint (default: the folder named in the model metadata, next to MODEL, if its weights digest matches)",
    )
    p.add_argument("--split", default="test")
    p.add_argument("--plugins", type=Path, default=None, help="libfcam_ort_ops.so for custom-op graphs")
    p.add_argument("--against", type=Path, default=None, help="second .onnx (e.g. the standard-ONNX graph)")
    p.add_argument("--save-dir", type=Path, default=None, help="write Polygraphy inputs/outputs for replay")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-metrics", action="store_true", help="skip MaxBoxAccV2/PxAP")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.export.parity import run_parity

    report = run_parity(
        args.model,
        args.data,
        checkpoint=args.checkpoint,
        split=args.split,
        plugin_library=args.plugins,
        batch_size=args.batch_size,
        limit=args.limit,
        save_dir=args.save_dir,
        against=args.against,
        with_metrics=not args.no_metrics,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    brief = {k: report.to_dict().get(k) for k in ("passed", "num_images", "method", "postprocess")}
    brief["max_abs_diff"] = [c["max_abs_diff"] for c in report.to_dict()["comparisons"]]
    brief["metrics"] = report.to_dict().get("metrics")
    print(json.dumps(brief))
    return 0 if report.passed else 1
