"""``fcam build-engine``: build a strongly typed TensorRT plan (plus its metadata sidecar) from an exported ONNX."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine (.plan) from an exported ONNX graph",
        description=(
            "Build a strongly typed TensorRT 10.x/11.x engine. Precision comes from the ONNX itself (fp32 as "
            "exported; fp16/int8 after ModelOpt). Writes MODEL.plan and MODEL.plan.json (the ONNX metadata)."
        ),
    )
    p.add_argument("onnx", type=Path, help="ONNX file written by `fcam export`")
    p.add_argument("--out", type=Path, required=True, help="plan file to write (e.g. model.plan)")
    p.add_argument(
        "--plugins",
        type=Path,
        action="append",
        default=None,
        metavar="LIB",
        help="TensorRT plugin library (libfcam_trt_plugins.so); repeatable; default: $FCAM_TRT_PLUGINS if set",
    )
    p.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="[NAME:]MIN/OPT/MAX",
        help="optimisation profile, e.g. images:1x224x224x3/4x224x224x3/8x224x224x3, or batch sizes 1/4/8",
    )
    p.add_argument("--timing-cache", type=Path, default=None, metavar="F", help="timing cache to read and update")
    p.add_argument("--serialize-plugins", action="store_true", help="embed the --plugins libraries in the plan")
    p.add_argument("--workspace-mb", type=int, default=None, help="builder workspace limit in MiB")
    p.add_argument("--no-tf32", action="store_true", help="disable TF32 tactics (fp32-exact convolutions)")
    p.add_argument("--trt-verbose", action="store_true", help="TensorRT verbose log")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.export.tensorrt import build_engine, parse_shapes
    from fcam_deploy.runtime.tensorrt import PLUGINS_ENV, resolve_plugin_libraries

    shapes = parse_shapes(args.shapes)
    if args.plugins is not None:
        plugins = resolve_plugin_libraries(args.plugins)
    elif os.environ.get(PLUGINS_ENV):
        plugins = resolve_plugin_libraries(None)
    else:
        plugins = []
    result = build_engine(
        args.onnx,
        args.out,
        plugins=plugins,
        shapes=shapes,
        timing_cache=args.timing_cache,
        serialize_plugins=args.serialize_plugins,
        workspace_bytes=None if args.workspace_mb is None else int(args.workspace_mb) << 20,
        tf32=not args.no_tf32,
        verbose=args.trt_verbose,
    )
    info = {
        "plan": str(result.plan),
        "sidecar": str(result.sidecar),
        "timing_cache": None if result.timing_cache is None else str(result.timing_cache),
        "seconds": round(result.seconds, 3),
        "tensorrt_version": result.tensorrt_version,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"wrote {result.plan} and {result.sidecar} (TensorRT {result.tensorrt_version}, {result.seconds:.1f} s)")
    return 0
