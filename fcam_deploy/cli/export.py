"""``fcam export``: a checkpoint -> one ONNX localization graph (image batch -> logits, class, map, mask, boxes);
``--triton-repo DIR`` also writes (or, with ``--model``, only writes) a Triton model repository."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypeVar

__all__ = ["register"]

_T = TypeVar("_T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory (config.json + weights)")
    p.add_argument("--out", type=Path, default=None, help="ONNX file to write (with --checkpoint)")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="deploy profile TOML (export/profiles/*.toml); explicit flags override it",
    )
    p.add_argument(
        "--postprocess", choices=POSTPROCESS_MODES, default=None, help="in-graph post-processing (default onnx)"
    )
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
    t = p.add_argument_group(
        "Triton model repository",
        "--triton-repo DIR writes DIR/<name>/{config.pbtxt,labels.txt,1/model.onnx|model.plan} for the exported "
        "model, or with --model for an existing .onnx (fcam export) or .plan (fcam build-engine), and validates "
        "config.pbtxt with Triton's ModelConfig protobuf (tritonclient) against the graph. Needs the scale extra.",
    )
    t.add_argument("--triton-repo", type=Path, default=None, help="Triton model repository folder to write")
    t.add_argument("--model", type=Path, default=None, help="package this .onnx / .plan instead of exporting")
    t.add_argument("--triton-name", default=None, help="model name (default: the model file's stem)")
    t.add_argument("--triton-version", type=int, default=1, help="version folder (default 1)")
    t.add_argument(
        "--triton-max-batch",
        type=int,
        default=None,
        help="max_batch_size (default 8, capped by a plan's profile; 0 for fixed-batch graphs)",
    )
    t.add_argument(
        "--triton-preferred-batch",
        type=int,
        nargs="+",
        default=None,
        help="dynamic batcher's preferred sizes (default: powers of two up to the max)",
    )
    t.add_argument("--triton-delay-us", type=int, default=2000, help="max queue delay in microseconds (default 2000)")
    t.add_argument("--triton-instances", type=int, default=1, help="instances per device (default 1)")
    t.add_argument(
        "--triton-instance-kind",
        choices=("KIND_CPU", "KIND_GPU", "KIND_AUTO"),
        default=None,
        help="default: KIND_CPU for ONNX, KIND_GPU for a plan",
    )
    t.add_argument("--triton-gpus", type=int, nargs="+", default=None, help="GPU indices for KIND_GPU")
    t.add_argument(
        "--triton-ort-ops",
        default=None,
        help="custom-op ONNX graphs: path of libfcam_ort_ops.so as the Triton server sees it",
    )
    p.set_defaults(func=_run, needs_extra="train")


def _triton(args: argparse.Namespace, model: Path) -> dict[str, object]:
    from fcam_deploy.export.triton import TritonOptions, write_triton_repo

    opts = TritonOptions(
        name=args.triton_name,
        version=args.triton_version,
        max_batch_size=args.triton_max_batch,
        preferred_batch_sizes=tuple(args.triton_preferred_batch) if args.triton_preferred_batch else None,
        max_queue_delay_us=args.triton_delay_us,
        instance_count=args.triton_instances,
        instance_kind=args.triton_instance_kind,
        gpus=tuple(args.triton_gpus or ()),
        ort_ops_library=args.triton_ort_ops,
    )
    return write_triton_repo(model, args.triton_repo, opts).summary()


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.cli._paths import output_file, refuse_overwriting_inputs
    from fcam_deploy.errors import ConfigError

    if args.model is not None:
        if args.triton_repo is None:
            raise ConfigError("--model packages an existing .onnx / .plan for Triton; it needs --triton-repo DIR")
        if args.checkpoint is not None or args.out is not None:
            raise ConfigError("give either --model (package an existing model) or --checkpoint/--out (export one)")
        print(json.dumps({"triton": _triton(args, args.model)}))
        return 0
    if args.checkpoint is None or args.out is None:
        raise ConfigError("fcam export needs --checkpoint and --out (or --model with --triton-repo)")
    from fcam_deploy.export.onnx_export import export_checkpoint
    from fcam_deploy.export.profiles import ExportProfile, load_profile

    output_file(args.out, "--out")  # before the export's seconds of work
    refuse_overwriting_inputs(args.out, [args.checkpoint, *args.checkpoint.glob("*")], "--out")

    prof = load_profile(args.profile) if args.profile else ExportProfile(name="defaults")

    def pick(flag: _T | None, default: _T) -> _T:
        return default if flag is None else flag

    meta = export_checkpoint(
        args.checkpoint,
        args.out,
        method=pick(args.method, prof.method),
        postprocess=pick(args.postprocess, prof.postprocess),
        opset=pick(args.opset, prof.opset),
        dynamic_batch=pick(args.dynamic_batch, prof.dynamic_batch),
        size=tuple(args.size) if args.size else prof.size,
        max_boxes=pick(args.max_boxes, prof.max_boxes),
    )
    triton = _triton(args, args.out) if args.triton_repo is not None else None
    print(
        json.dumps(
            {
                "out": str(args.out),
                "method": meta.method,
                "postprocess": meta.postprocess,
                "input": {
                    "name": "images",
                    "dtype": "uint8",
                    "layout": meta.input_layout,
                    "shape": ["N" if meta.dynamic_batch else 1, *meta.input_size, 3],
                },
                "outputs": list(meta.output_names),
                "tau": meta.tau,
                "opset": meta.opset,
                "profile": prof.name,
                "next": prof.build_engine_command(str(args.out), str(Path(args.out).with_suffix(".plan"))),
                **({"triton": triton} if triton is not None else {}),
            }
        )
    )
    return 0
