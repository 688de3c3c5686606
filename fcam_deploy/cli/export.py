"""``fcam export``: a checkpoint -> one ONNX localization graph (image batch -> logits, class, map, mask, boxes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from fcam_deploy.runtime.base import METHODS, POSTPROCESS_MODES

    p = sub.add_parser(
        "export",
        help="export a checkpoint to one ONNX graph (uint8 NHWC RGB in; logits, class, map, mask, boxes out)",
        description=(
            "Export a checkpoint as one ONNX graph. Input 'images': uint8 (N,H,W,3) RGB resized to the model size; "
            "normalisation is inside the graph. Outputs: logits, pred_class, map (+ mask with --postprocess onnx; "
            "+ mask, boxes, box_count with --postprocess custom-op, which needs libfcam_ort_ops.so / the TensorRT "
            "plugin). Metadata (class names, size, mean/std, tau, method, ...) goes into metadata_props."
        ),
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (config.json + weights)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--profile", type=Path, default=None,
                   help="deploy profile TOML (export/profiles/*.toml); explicit flags override it")
    p.add_argument("--postprocess", choices=POSTPROCESS_MODES, default=None,
                   help="in-graph post-processing (default onnx)")
    p.add_argument(
        "--method", choices=METHODS, default=None, help="map method (default: fcam for F-CAM checkpoints, else cam)"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (18-23, default 18)")
    p.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="symbolic batch dimension (default on; --no-dynamic-batch fixes N=1)",
    )
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None, help="input size (default: ckpt)")
    p.add_argument("--max-boxes", type=int, default=None, help="rows of the boxes output (custom-op; default 8)")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.export.onnx_export import export_checkpoint
    from fcam_deploy.export.profiles import ExportProfile, load_profile

    prof = load_profile(args.profile) if args.profile else ExportProfile(name="defaults")

    def pick(flag: object, default: object) -> object:
        return default if flag is None else flag

    meta = export_checkpoint(
        args.checkpoint,
        args.out,
        method=pick(args.method, prof.method),  # type: ignore[arg-type]
        postprocess=pick(args.postprocess, prof.postprocess),  # type: ignore[arg-type]
        opset=pick(args.opset, prof.opset),  # type: ignore[arg-type]
        dynamic_batch=pick(args.dynamic_batch, prof.dynamic_batch),  # type: ignore[arg-type]
        size=tuple(args.size) if args.size else prof.size,
        max_boxes=pick(args.max_boxes, prof.max_boxes),  # type: ignore[arg-type]
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "method": meta.method,
                "postprocess": meta.postprocess,
                "input": {"name": "images", "dtype": "uint8", "layout": meta.input_layout,
                          "shape": ["N" if meta.dynamic_batch else 1, *meta.input_size, 3]},
                "outputs": list(meta.output_names),
                "tau": meta.tau,
                "opset": meta.opset,
                "profile": prof.name,
                "next": prof.build_engine_command(str(args.out), str(Path(args.out).with_suffix(".plan"))),
            }
        )
    )
    return 0
