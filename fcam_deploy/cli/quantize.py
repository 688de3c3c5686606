"""``fcam quantize MODEL.onnx --data DIR --out MODEL-int8.onnx``: INT8 (QDQ) graph for ONNX Runtime on CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8 post-training quantization of an exported .onnx (ORT CPU, calibrated on the training split)",
        description=(
            "Write an INT8 copy of an fp32 graph from `fcam export` (QDQ: uint8 activations, int8 per-channel "
            "weights on Conv/MatMul/Gemm; normalisation, maps and threshold stay fp32). Calibration images come "
            "from a split of a dataset in the wsolevaluation layout, resized like the runtime. Check the result "
            "with `fcam bench` (INT8 latency and its MaxBoxAccV2/PxAP difference to fp32) before shipping it."
        ),
    )
    p.add_argument("model", type=Path, help="fp32 .onnx written by fcam export (--postprocess none or onnx)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (metadata/<split>/..., images/)")
    p.add_argument("--split", default="train", help="calibration split (default train; never the test split)")
    p.add_argument("--images", type=int, default=128, help="calibration images (default 128)")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    p.add_argument("--out", type=Path, required=True, help="INT8 .onnx to write")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.cli._paths import output_file, refuse_overwriting_inputs
    from fcam_deploy.errors import ConfigError
    from fcam_deploy.export.parity import load_split_batches
    from fcam_deploy.export.quantize import quantize_int8
    from fcam_deploy.runtime.ort import OrtRunner

    output_file(args.out, "--out")
    refuse_overwriting_inputs(args.out, [args.model], "--out")
    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}")
    if args.split == "test":
        raise ConfigError("calibrating on the test split leaks it into the model; use --split train or val")
    runner = OrtRunner(args.model, threads=1)
    meta = runner.metadata
    runner.close()
    batch = 8 if meta.dynamic_batch else 1
    batches, ids, _ = load_split_batches(args.data, args.split, meta.input_size, batch_size=batch, limit=args.images)
    out_meta = quantize_int8(args.model, args.out, batches, method=args.method)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "precision": "int8",
                "calibration_images": len(ids),
                "calibration_split": args.split,
                "method": args.method,
                "input_size": list(out_meta.input_size),
            }
        )
    )
    return 0
