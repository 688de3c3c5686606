"""Reduced-precision variants of an exported graph with NVIDIA ModelOpt, and their accuracy delta on ORT CPU.

Runs in the separate tool environment made by ``export/tools/setup_modelopt_env.sh`` (ModelOpt's onnx /
onnxruntime-gpu pins clash with the project's). Not part of CI.

    export/tools/.venv/bin/python export/tools/precision.py --onnx model.onnx --data DIR --out OUTDIR \
        [--modes fp16 int8] [--calib-images 64] [--test-limit N]

* **FP16**: ``modelopt.onnx.autocast.convert_to_mixed_precision(low_precision_type="fp16", keep_io_types=True)``:
  the uint8 input and fp32 outputs stay as they are; the post-processing op types (ReduceMax/Min, Greater, Cast,
  Resize, Where, Clip, Softmax, ArgMax) are kept in fp32 through ``op_types_to_exclude``; AutoCast's reference run
  gets training-split images (its random inputs cannot be uint8).
* **INT8**: ``modelopt.onnx.quantization.quantize(quantize_mode="int8", calibration_method="entropy",
  high_precision_dtype="fp32")`` with calibration images from the **training split** (uint8 NHWC, resized like the
  runtime); only Conv/Gemm/MatMul get Q/DQ, everything else (post-processing included) stays fp32.
  A ``custom-op`` graph cannot be quantized on CPU (ModelOpt forces the TensorRT EP for custom ops): quantize the
  ``--postprocess onnx`` graph.

Each variant and the fp32 graph then run in ONNX Runtime (CPU) on the test split; the report (``OUTDIR/precision.json``)
gives MaxBoxAccV2 / PxAP per variant, their delta vs fp32, top-1 agreement and the map max |Δ|.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("fcam.precision")

#: op types of the post-processing tail that must stay fp32 (the mask threshold and the map normalisation)
POSTPROCESS_OPS = ("ReduceMax", "ReduceMin", "Greater", "Cast", "Resize", "Where", "Clip", "Softmax", "ArgMax")


def _calibration_batch(data: Path, size: tuple[int, int], n: int) -> np.ndarray:
    from fcam_deploy.export.parity import load_split_batches

    batches, _, _ = load_split_batches(data, "train", size, batch_size=n, limit=n)
    return batches[0]


def _copy_metadata(src: Path, dst: Path, precision: str) -> None:
    """ModelOpt drops ``metadata_props``: put the source's back (plus the precision) so the runtime accepts it."""
    import onnx

    ref = onnx.load(str(src), load_external_data=False)
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for p in ref.metadata_props:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key="fcam_deploy.precision", value=precision)
    onnx.save(model, str(dst))


def to_fp16(src: Path, dst: Path, calib: np.ndarray) -> dict[str, Any]:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from fcam_deploy.runtime.base import INPUT_NAME

    # AutoCast's reference run draws random inputs (signed, which a uint8 input cannot take): give it real images
    calib_path = dst.with_suffix(".calib.npz")
    np.savez(calib_path, **{INPUT_NAME: calib})
    t = time.perf_counter()
    out = convert_to_mixed_precision(
        onnx_path=str(src),
        low_precision_type="fp16",
        keep_io_types=True,
        op_types_to_exclude=list(POSTPROCESS_OPS),
        calibration_data=str(calib_path),
    )
    # AutoCast labels every unknown dimension dim_param "unk" in value_info; ONNX Runtime takes equal dim_params as
    # equal sizes and then re-uses buffers of different sizes ("Shape mismatch attempting to re-use buffer"), so
    # drop those entries and let the runtime infer them.
    keep = [v for v in out.graph.value_info if "unk" not in {d.dim_param for d in v.type.tensor_type.shape.dim}]
    dropped = len(out.graph.value_info) - len(keep)
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    onnx.save(out, str(dst))
    _copy_metadata(src, dst, "fp16")
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "op_types_kept_fp32": list(POSTPROCESS_OPS),
        "value_info_dropped": dropped,
    }


def to_int8(src: Path, dst: Path, calib: np.ndarray) -> dict[str, Any]:
    from modelopt.onnx.quantization import quantize

    from fcam_deploy.runtime.base import INPUT_NAME

    t = time.perf_counter()
    quantize(
        onnx_path=str(src),
        quantize_mode="int8",
        calibration_data={INPUT_NAME: calib},
        calibration_method="entropy",
        calibration_eps=["cpu"],
        high_precision_dtype="fp32",
        output_path=str(dst),
    )
    _copy_metadata(src, dst, "int8")
    return {"seconds": round(time.perf_counter() - t, 2), "calibration_images": int(calib.shape[0])}


def evaluate(path: Path, data: Path, limit: int | None) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    from fcam_deploy.export.onnx_export import read_onnx_metadata
    from fcam_deploy.export.parity import _metrics, load_split_batches
    from fcam_deploy.runtime.base import INPUT_NAME
    from fcam_deploy.runtime.ort import make_session

    meta = read_onnx_metadata(path)
    sess = make_session(path, "cpu")
    batches, ids, wsol = load_split_batches(data, "test", meta.input_size, 16, limit)
    outs = []
    for b in batches:
        res = sess.run(None, {INPUT_NAME: b})
        outs.append(dict(zip(meta.output_names, res, strict=True)))
    maps = [m.astype(np.float32) for o in outs for m in o["map"]]
    return {"metrics": _metrics(maps, ids, data, wsol), "num_images": len(ids), "providers": sess.get_providers()}, outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="fp32 graph from `fcam export --postprocess onnx`")
    p.add_argument("--data", type=Path, required=True, help="dataset folder with train and test splits")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--modes", nargs="+", choices=("fp16", "int8"), default=["fp16", "int8"])
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--test-limit", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import importlib.metadata as md

    args.out.mkdir(parents=True, exist_ok=True)
    versions = {n: md.version(n) for n in ("nvidia-modelopt", "onnx", "onnxruntime-gpu") if _has(n)}
    report: dict[str, Any] = {"model": str(args.onnx), "data": str(args.data), "versions": versions, "variants": {}}
    base, base_outs = evaluate(args.onnx, args.data, args.test_limit)
    report["fp32"] = base
    log.info("fp32: %s", base["metrics"])
    from fcam_deploy.export.onnx_export import read_onnx_metadata

    meta = read_onnx_metadata(args.onnx)
    for mode in args.modes:
        dst = args.out / f"{args.onnx.stem}.{mode}.onnx"
        try:
            calib = _calibration_batch(args.data, meta.input_size, args.calib_images)
            info = to_fp16(args.onnx, dst, calib) if mode == "fp16" else to_int8(args.onnx, dst, calib)
            res, outs = evaluate(dst, args.data, args.test_limit)
        except Exception as exc:  # report what blocked this variant and go on with the next
            log.exception("%s failed", mode)
            report["variants"][mode] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        agree = float(np.mean(np.concatenate([a["pred_class"] == b["pred_class"] for a, b in zip(base_outs, outs)])))
        map_diff = max(float(np.abs(a["map"] - b["map"]).max()) for a, b in zip(base_outs, outs))
        delta = {
            k: (
                None
                if res["metrics"][k] is None or base["metrics"][k] is None
                else res["metrics"][k] - base["metrics"][k]
            )
            for k in res["metrics"]
        }
        report["variants"][mode] = {
            **info,
            **res,
            "delta_vs_fp32": delta,
            "top1_agreement": agree,
            "map_max_abs_diff": map_diff,
            "file": str(dst),
        }
        log.info("%s: %s delta %s", mode, res["metrics"], delta)
    (args.out / "precision.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


def _has(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
