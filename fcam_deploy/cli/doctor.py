"""``fcam doctor``: what this machine can run, and a TensorRT-vs-ONNX-Runtime parity check where TensorRT exists.

Reports versions (Python, torch + its CUDA, ONNX Runtime + its providers, TensorRT, cuda-python), the CUDA devices,
whether the native libraries load (TensorRT plugin library, ORT custom-op library, torch extension), and, on a
machine with TensorRT and a GPU, builds a tiny engine from a probe ONNX graph and compares its outputs with ONNX
Runtime on CPU.

Exit codes: 0 when nothing is broken (absent optional legs are reported, not failed); 1 when a check fails (a
library given explicitly does not load, the engine build or parity fails), or, with ``--strict``, when any leg is
missing.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Check", "collect", "register"]

ORT_OPS_ENV = "FCAM_ORT_OPS"
TRT_PLUGINS_ENV = "FCAM_TRT_PLUGINS"

#: Parity tolerance of the probe engine against ORT CPU (TF32 off; fp32 accumulation order differs).
PARITY_ATOL = 1e-4


@dataclass
class Check:
    """One line of the report.

    Attributes:
        name: what was checked.
        status: ``ok``, ``missing`` (an optional leg is absent: fine unless ``--strict``), ``skipped`` (not
            applicable here) or ``fail`` (something present is broken).
        detail: versions, paths, measured numbers, or the reason.
        info: structured facts for ``--json``.
    """

    name: str
    status: str
    detail: str
    info: dict[str, Any] = field(default_factory=dict)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="report versions, GPUs, native libraries; verify the TensorRT leg against ONNX Runtime",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--plugins",
        type=Path,
        default=None,
        metavar="LIB",
        help=f"TensorRT plugin library to check (default: ${TRT_PLUGINS_ENV})",
    )
    p.add_argument(
        "--ort-ops",
        type=Path,
        default=None,
        metavar="LIB",
        help=f"ONNX Runtime custom-op library to check (default: ${ORT_OPS_ENV})",
    )
    p.add_argument("--no-engine", action="store_true", help="skip the TensorRT engine build + parity check")
    p.add_argument("--strict", action="store_true", help="exit 1 when any leg (TensorRT, GPU, libraries) is missing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)


def _version(module: str) -> tuple[Any | None, str]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a native library behind the module
        return None, f"{type(exc).__name__}: {exc}"
    return mod, str(getattr(mod, "__version__", "unknown"))


def _tensorrt() -> tuple[Any | None, str]:
    """(module, version) when TensorRT's Python bindings import, else (None, why): a namespace package left by a
    stub-only install (``tensorrt-stubs``) imports but is not TensorRT."""
    from fcam_deploy.errors import BackendUnavailableError
    from fcam_deploy.export.tensorrt import import_tensorrt

    try:
        mod = import_tensorrt()
    except (BackendUnavailableError, OSError) as exc:  # OSError: a native library behind the bindings
        return None, f"{type(exc).__name__}: {exc}"
    return mod, str(mod.__version__)


def _library_path(arg: Path | None, env: str) -> tuple[Path | None, str]:
    if arg is not None:
        return arg, "--argument"
    value = os.environ.get(env, "")
    if value:
        return Path(value.split(os.pathsep)[0]), f"${env}"
    return None, ""


def collect(plugins: Path | None = None, ort_ops: Path | None = None, engine: bool = True) -> list[Check]:
    """Run every check and return the report lines (never raises for a missing or broken leg)."""
    checks: list[Check] = [
        Check("python", "ok", f"{platform.python_version()} ({sys.executable}) on {platform.platform()}")
    ]

    from fcam_deploy.ops.cpu import native_cpu_available

    core_ok, core_where = native_cpu_available()
    checks.append(
        Check("native-core", "ok" if core_ok else "fail", core_where, {"path": core_where if core_ok else None})
    )

    torch, tv = _version("torch")
    gpus: list[dict[str, Any]] = []
    if torch is None:  # the lean install: torch belongs to the train extra
        checks.append(Check("torch", "missing", f'{tv} (the train extra: pip install "fcam-deploy[train]")'))
    else:
        cuda_build = torch.version.cuda
        avail = bool(torch.cuda.is_available())
        checks.append(
            Check(
                "torch",
                "ok",
                f"{tv} (CUDA build {cuda_build or 'none'}; CUDA available: {avail})",
                {"version": tv, "cuda_build": cuda_build, "cuda_available": avail},
            )
        )
        if avail:
            for i in range(torch.cuda.device_count()):
                prop = torch.cuda.get_device_properties(i)
                gpus.append(
                    {
                        "index": i,
                        "name": prop.name,
                        "capability": f"{prop.major}.{prop.minor}",
                        "memory_gib": round(prop.total_memory / 2**30, 1),
                    }
                )
    checks.append(
        Check(
            "gpus",
            "ok" if gpus else "missing",
            "; ".join(f"cuda:{g['index']} {g['name']} sm_{g['capability']} {g['memory_gib']} GiB" for g in gpus)
            or "no CUDA device visible to torch",
            {"devices": gpus},
        )
    )

    ort, ov = _version("onnxruntime")
    if ort is None:
        checks.append(Check("onnxruntime", "fail", ov))
    else:
        providers = list(ort.get_available_providers())
        checks.append(
            Check(
                "onnxruntime",
                "ok",
                f"{ov}; providers: {', '.join(providers)}",
                {"version": ov, "providers": providers, "device": ort.get_device()},
            )
        )

    trt, trv = _tensorrt()
    checks.append(
        Check(
            "tensorrt",
            "ok" if trt is not None else "missing",
            trv if trt is not None else f"not usable ({trv}); the TensorRT leg cannot run here",
            {"version": trv if trt is not None else None},
        )
    )

    cb, cbv = _version("cuda.bindings")
    checks.append(
        Check(
            "cuda-python", "ok" if cb is not None else "missing", cbv if cb is not None else f"not importable ({cbv})"
        )
    )

    checks.append(_check_trt_plugins(plugins, trt))
    checks.append(_check_ort_ops(ort_ops, ort))
    checks.append(_check_torch_extension(torch))

    if not engine:
        checks.append(Check("tensorrt-engine", "skipped", "--no-engine"))
    elif trt is None:
        checks.append(Check("tensorrt-engine", "missing", "TensorRT not installed: engine build + parity not run"))
    elif not gpus:
        checks.append(Check("tensorrt-engine", "missing", "no CUDA GPU: engine build + parity not run"))
    elif ort is None:
        checks.append(Check("tensorrt-engine", "skipped", "onnxruntime missing: no reference to compare against"))
    else:
        checks.append(_check_engine_parity())
    return checks


def _check_trt_plugins(arg: Path | None, trt: Any | None) -> Check:
    path, source = _library_path(arg, TRT_PLUGINS_ENV)
    if path is None:
        return Check(
            "trt-plugins",
            "missing",
            f"no library given (--plugins or ${TRT_PLUGINS_ENV}); not searched{_built_hint('trt')}",
        )
    info: dict[str, Any] = {"path": str(path), "source": source}
    if not path.is_file():
        return Check("trt-plugins", "fail", f"{path} (from {source}) does not exist", info)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return Check("trt-plugins", "fail", f"{path}: dlopen failed: {exc}", info)
    symbols = {s: hasattr(lib, s) for s in ("getCreators", "setLoggerFinder")}
    info["symbols"] = symbols
    if not all(symbols.values()):
        missing = [s for s, ok in symbols.items() if not ok]
        return Check(
            "trt-plugins", "fail", f"{path}: loads but lacks {missing} (not a dynamic TensorRT plugin library)", info
        )
    if trt is None:
        return Check(
            "trt-plugins",
            "ok",
            f"{path}: dlopen ok, exports getCreators/setLoggerFinder (TensorRT absent: registry load not tried)",
            info,
        )
    try:
        import tensorrt as trt_typed  # type: ignore[import-not-found, unused-ignore]  # = trt, statically typed

        from fcam_deploy.export.tensorrt import load_plugin_libraries

        logger = trt_typed.Logger(trt_typed.Logger.WARNING)
        load_plugin_libraries(trt, trt_typed.Runtime(logger).get_plugin_registry(), [path])
        creators = [
            f"{c.name}/{c.plugin_version}/{c.plugin_namespace}"
            for c in trt_typed.get_plugin_registry().all_creators
            if c.plugin_namespace == "fcam"
        ]
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed: it becomes a failed check
        return Check("trt-plugins", "fail", f"{path}: TensorRT registry rejected it: {exc}", info)
    info["creators"] = creators
    return Check("trt-plugins", "ok", f"{path}: loaded by TensorRT; fcam creators: {creators or 'none'}", info)


def _check_ort_ops(arg: Path | None, ort: Any | None) -> Check:
    path, source = _library_path(arg, ORT_OPS_ENV)
    if path is None:
        return Check(
            "ort-custom-ops",
            "missing",
            f"no library given (--ort-ops or ${ORT_OPS_ENV}); not searched{_built_hint('ort')}",
        )
    info = {"path": str(path), "source": source}
    if not path.is_file():
        return Check("ort-custom-ops", "fail", f"{path} (from {source}) does not exist", info)
    if ort is None:
        return Check("ort-custom-ops", "skipped", "onnxruntime missing", info)
    try:
        ort.SessionOptions().register_custom_ops_library(str(path))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/RuntimeException types
        return Check("ort-custom-ops", "fail", f"{path}: register_custom_ops_library failed: {exc}", info)
    return Check("ort-custom-ops", "ok", f"{path}: registered with ONNX Runtime", info)


def _check_torch_extension(torch: Any | None) -> Check:
    if torch is None:
        return Check("torch-extension", "skipped", "torch missing")
    try:
        ops = importlib.import_module("fcam_deploy.ops")
        status = ops.native_status()
    except Exception as exc:  # noqa: BLE001 - a broken ops package is a failure to report
        return Check("torch-extension", "fail", f"fcam_deploy.ops failed to load: {type(exc).__name__}: {exc}")
    info = {"available": bool(status.available), "cuda_kernel": bool(status.cuda), "reason": status.reason}
    if not status.available:
        return Check(
            "torch-extension",
            "missing",
            f"torch.ops.fcam.cam_postprocess unavailable ({status.reason}); the NumPy reference is used",
            info,
        )
    return Check("torch-extension", "ok", f"{status.reason}; CUDA kernel: {'yes' if status.cuda else 'no'}", info)


def _built_hint(kind: str) -> str:
    """Where `make kernels` left a library, as a hint only (doctor never loads a path it was not given)."""
    try:
        ops = importlib.import_module("fcam_deploy.ops")
        path = ops.trt_plugin_path() if kind == "trt" else ops.ort_library_path()
    except Exception:  # noqa: BLE001 - optional hint; a broken ops package is reported by the torch-extension check
        return ""
    return f"; a build exists at {path}" if path is not None else ""


def _check_engine_parity() -> Check:
    import numpy as np
    import onnxruntime as ort

    from fcam_deploy.export.tensorrt import build_engine, parse_shapes, write_probe_onnx
    from fcam_deploy.runtime.tensorrt import open_runner

    with tempfile.TemporaryDirectory(prefix="fcam-doctor-") as tmp:
        onnx_path = write_probe_onnx(Path(tmp) / "probe.onnx")
        plan = Path(tmp) / "probe.plan"
        try:
            result = build_engine(onnx_path, plan, shapes=parse_shapes(["1/2/4"]), tf32=False)
            images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            ref = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images}), strict=True))
            with open_runner(plan, device="cuda:0") as runner:
                got = runner.run(images)
        except Exception as exc:  # noqa: BLE001 - every failure of the leg is the finding this command exists to report
            return Check("tensorrt-engine", "fail", f"{type(exc).__name__}: {exc}")
    diffs = {k: float(np.max(np.abs(got[k].astype(np.float64) - ref[k].astype(np.float64)))) for k in ref}
    exact = bool(np.array_equal(got["pred_class"], ref["pred_class"]))
    mask_mismatch = int(np.count_nonzero(got["mask"] != ref["mask"]))
    ok = exact and diffs["logits"] <= PARITY_ATOL and diffs["map"] <= PARITY_ATOL and mask_mismatch <= 2
    info = {
        "max_abs_diff": diffs,
        "pred_class_equal": exact,
        "mask_mismatch_pixels": mask_mismatch,
        "build_seconds": round(result.seconds, 2),
        "tensorrt_version": result.tensorrt_version,
    }
    detail = (
        f"probe engine built in {result.seconds:.1f} s; vs ORT CPU: logits {diffs['logits']:.2e}, map "
        f"{diffs['map']:.2e} max abs diff, classes {'equal' if exact else 'DIFFER'}, {mask_mismatch} mask "
        f"pixel(s) differ (tol {PARITY_ATOL}, <= 2 tie pixels)"
    )
    return Check("tensorrt-engine", "ok" if ok else "fail", detail, info)


def _run(args: argparse.Namespace) -> int:
    checks = collect(args.plugins, args.ort_ops, engine=not args.no_engine)
    failed = [c for c in checks if c.status == "fail"]
    missing = [c for c in checks if c.status == "missing"]
    code = 1 if failed or (args.strict and missing) else 0
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks], "exit_code": code, "strict": args.strict}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.name:<{width}}  {c.status:<7}  {c.detail}")
        verdict = "FAIL" if failed else ("missing legs (--strict)" if code else "OK")
        print(f"doctor: {verdict} ({len(failed)} failed, {len(missing)} missing)")
    return code
