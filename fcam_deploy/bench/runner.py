"""Run a benchmark suite: latency, FLOPs, localization and backend parity of every method and backend.

Everything that a headline ratio compares is measured in the same process, back to back, on the same inputs.
A leg that cannot run here (TensorRT without a GPU, LPCAM without a training split, ...) is recorded as a
``{"kind": "skipped", "reason": ...}`` record, never silently dropped.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fcam_deploy.bench.flops import count_onnx_macs, count_parameters, count_torch_macs
from fcam_deploy.bench.latency import LatencyStats, measure_latency, peak_rss_mb, reset_peak_rss
from fcam_deploy.bench.manifest import environment_manifest
from fcam_deploy.bench.suite import SuiteConfig
from fcam_deploy.errors import ConfigError

if TYPE_CHECKING:
    from fcam_deploy.models import FCAM, CAMClassifier

__all__ = ["SCHEMA_VERSION", "BenchModel", "run_suite"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam")
EXPORTABLE = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "fcam")
#: The graph timed at "model" scope, counted for FLOPs and checked for parity: logits, class, map and the
#: standard-ONNX mask (one export per method serves all three; the mask is a compare, negligible in cost).
MODEL_GRAPH = "onnx"


@dataclass(frozen=True)
class BenchModel:
    """A model under benchmark: a checkpoint directory plus whether its weights are trained."""

    label: str
    checkpoint: Path
    arch: str
    trained: bool


def _latency_record(stats: LatencyStats, rss: float, **keys: Any) -> dict[str, Any]:
    return {
        "kind": "latency",
        **keys,
        "batch": stats.batch,
        "p50_ms": stats.p50,
        "p90_ms": stats.p90,
        "p99_ms": stats.p99,
        "mean_ms": stats.mean,
        "per_image_ms": stats.p50 / stats.batch,
        "throughput_ips": stats.throughput,
        "peak_rss_mb": rss,
        "samples_ms": stats.samples_ms,
    }


def _cam_classifier(model: CAMClassifier | FCAM) -> CAMClassifier:
    """The CAM classifier of a checkpoint's model (an F-CAM model wraps its frozen classifier)."""
    from fcam_deploy.models import FCAM

    return model.classifier if isinstance(model, FCAM) else model


def _no_grad_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under ``torch.no_grad()`` (a timed forward-only call)."""
    with torch.no_grad():
        return fn(*args, **kwargs)


def _timed(
    fn: Callable[[], Any], cfg: SuiteConfig, batch: int, sync: Callable[[], None] | None
) -> tuple[LatencyStats, float]:
    reset_peak_rss()
    stats = measure_latency(fn, batch=batch, warmup=cfg.warmup, iters=cfg.iters, sync=sync)
    return stats, peak_rss_mb()


def _random_checkpoint(arch: str, num_classes: int, size: int, out: Path) -> Path:
    from fcam_deploy.models import FCAM, CheckpointMeta, build_classifier, save_checkpoint

    torch.manual_seed(0)
    model = FCAM(build_classifier(arch, num_classes)).eval()
    meta = CheckpointMeta(
        arch=arch,
        num_classes=num_classes,
        input_size=(size, size),
        threshold=0.5,
        extra={"note": "random weights: latency and FLOPs only"},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, model, meta)


def _ensure_data(cfg: SuiteConfig, data_dir: Path | None, work: Path) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from fcam_deploy.data.synth import SynthConfig, generate_synthetic

    s = dict(cfg.synth)
    out = work / "data"
    generate_synthetic(
        out,
        SynthConfig(size=int(s.get("size", 96)), num_classes=int(s.get("classes", 4))),
        {k: int(s[k]) for k in ("train", "val", "test") if k in s},
        seed=int(s.get("seed", 0)),
        overwrite=True,
    )
    return out


def _uint8_batch(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


class _Run:
    def __init__(self, cfg: SuiteConfig, out_dir: Path, data_dir: Path, progress: bool) -> None:
        self.cfg = cfg
        self.out = out_dir
        self.data = data_dir
        self.records: list[dict[str, Any]] = []
        self.progress = progress
        self._onnx_cache: dict[tuple[str, str, str, int], Path] = {}
        self._native_size: dict[str, int] = {}
        self.prototypes: Any = None

    # -- helpers -------------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.progress:
            print(f"[bench {self.cfg.name}] {msg}", flush=True)
        log.info(msg)

    def skip(self, what: str, reason: str, **keys: Any) -> None:
        self.records.append({"kind": "skipped", "what": what, "reason": reason, **keys})

    def onnx_for(self, bm: BenchModel, method: str, postprocess: str, size: int) -> Path:
        key = (bm.label, method, postprocess, size)
        if key not in self._onnx_cache:
            from fcam_deploy.export.onnx_export import build_graph, export_graph

            graph, meta = build_graph(bm.checkpoint, method, postprocess, (size, size))
            path = self.out / "work" / "onnx" / f"{bm.label}-{method}-{postprocess}-{size}.onnx"
            export_graph(graph, meta, path, dynamic_batch=True)
            self._onnx_cache[key] = path
        return self._onnx_cache[key]

    # -- legs ----------------------------------------------------------------------------------------
    def flops(self, bm: BenchModel, model: CAMClassifier | FCAM, method: str, size: int) -> None:
        from fcam_deploy.cams import compute_maps
        from fcam_deploy.export.onnx_export import build_graph

        rec: dict[str, Any] = {
            "kind": "flops",
            "model": bm.label,
            "arch": bm.arch,
            "method": method,
            "resolution": size,
        }
        clf = _cam_classifier(model)
        rec["params_m"] = count_parameters(model if method == "fcam" else clf) / 1e6
        x = torch.zeros(1, 3, size, size)
        if method in EXPORTABLE:
            graph, _ = build_graph(bm.checkpoint, method, MODEL_GRAPH, (size, size))
            u8 = _uint8_batch(1, size, size)
            with torch.no_grad():
                rec["torch_gmac"] = count_torch_macs(lambda: graph(u8)) / 1e9
            onnx_path = self.onnx_for(bm, method, MODEL_GRAPH, size)
            rec["onnx_gmac"] = count_onnx_macs(onnx_path, {"images": [1, size, size, 3]}) / 1e9
            rec["torch_onnx_rel_diff"] = abs(rec["onnx_gmac"] - rec["torch_gmac"]) / max(rec["torch_gmac"], 1e-12)
        if method in GRADIENT_METHODS:
            rec["autograd_gmac"] = count_torch_macs(lambda: compute_maps(clf, x, method, impl="autograd")) / 1e9
        if method == "scorecam":
            with torch.no_grad():
                rec["torch_gmac"] = count_torch_macs(lambda: compute_maps(clf, x, "scorecam")) / 1e9
        if method == "lpcam" and self.prototypes is not None:
            with torch.no_grad():
                rec["torch_gmac"] = (
                    count_torch_macs(lambda: compute_maps(clf, x, "lpcam", prototypes=self.prototypes)) / 1e9
                )
        self.records.append(rec)

    def fit_prototypes(self, clf: torch.nn.Module, size: int, mean: Any, std: Any) -> None:
        from fcam_deploy.cams.lpcam import class_balanced_indices, fit_lpcam
        from fcam_deploy.data import WSOLDataset, open_dataset

        try:
            meta = open_dataset(self.data, "train")
        except ConfigError as exc:
            self.skip("lpcam", f"no training split to fit prototypes: {exc}")
            return
        ds = WSOLDataset(meta, train=False, size=size, mean=mean, std=std)
        subset = torch.utils.data.Subset(
            ds, class_balanced_indices([meta.labels[i] for i in meta.image_ids], total=self.cfg.lpcam_fit_images)
        )
        loader = torch.utils.data.DataLoader(subset, batch_size=16)
        # the official split at one scale (+ flip): the 4-scale split costs ~7.6x the fitting time for a cost and
        # accuracy benchmark (its effect is measured in benchmarks/lpcam/)
        with torch.no_grad():
            self.prototypes = fit_lpcam(clf, loader, seed=0, max_vectors_per_class=4000, split_scales=(1.0,))

    def latency(self, bm: BenchModel, model: CAMClassifier | FCAM, method: str, size: int) -> None:
        from fcam_deploy.cams import compute_maps
        from fcam_deploy.export.onnx_export import build_graph

        cfg = self.cfg
        clf = _cam_classifier(model)
        keys = {"model": bm.label, "arch": bm.arch, "method": method, "resolution": size, "scope": "model"}
        for backend in cfg.backends:
            if backend == "torch-autograd" and method not in GRADIENT_METHODS:
                continue
            if method not in EXPORTABLE and backend in ("torch-compile", "onnxruntime", "tensorrt"):
                self.skip(f"{method}/{backend}", "method has no forward-only exportable graph", **keys)
                continue
            if method == "lpcam" and self.prototypes is None:
                self.skip(f"{method}/{backend}", "no LPCAM prototypes", **keys)
                continue
            if backend == "tensorrt":
                self.skip(f"{method}/tensorrt", _trt_unavailable_reason() or "not wired in this suite", **keys)
                continue
            eager = (
                build_graph(bm.checkpoint, method, MODEL_GRAPH, (size, size))[0]
                if backend in ("torch", "torch-compile") and method in EXPORTABLE
                else None
            )
            for batch in cfg.batches:
                u8 = _uint8_batch(batch, size, size)
                fn: Callable[[], Any]
                if backend == "torch" and method in EXPORTABLE:
                    assert eager is not None  # built above for the exportable methods
                    fn = partial(_no_grad_call, eager, u8)
                elif backend == "torch":  # scorecam, lpcam: torch only
                    x = torch.randn(batch, 3, size, size)
                    kw = {"prototypes": self.prototypes} if method == "lpcam" else {}
                    fn = partial(_no_grad_call, compute_maps, clf, x, method, **kw)
                elif backend == "torch-autograd":
                    x = torch.randn(batch, 3, size, size)
                    fn = partial(compute_maps, clf, x, method, impl="autograd")
                elif backend == "torch-compile":
                    assert eager is not None  # built above for the exportable methods
                    compiled = torch.compile(eager, dynamic=False)
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        compiled(u8)
                    compile_s = time.perf_counter() - t0
                    fn = partial(_no_grad_call, compiled, u8)
                    keys_c = {**keys, "compile_s": compile_s}
                else:  # onnxruntime
                    from fcam_deploy.runtime.ort import make_session

                    sess = make_session(
                        self.onnx_for(bm, method, MODEL_GRAPH, size), "cpu", None, needs_custom_ops=False
                    )
                    fn = partial(sess.run, None, {"images": u8.numpy()})
                stats, rss = _timed(fn, cfg, batch, None)
                extra = keys_c if backend == "torch-compile" else keys
                self.records.append(_latency_record(stats, rss, backend=backend, **extra))

    def int8_for(self, bm: BenchModel, method: str, size: int) -> Path | None:
        """The INT8 (ORT static QDQ) copy of the fp32 graph, calibrated on training images (cached)."""
        key = (bm.label, method, "int8", size)
        if key in self._onnx_cache:
            return self._onnx_cache[key]
        from fcam_deploy.export.parity import load_split_batches
        from fcam_deploy.export.quantize import quantize_int8

        try:
            calib, _, _ = load_split_batches(
                self.data, "train", (size, size), batch_size=8, limit=self.cfg.int8_calibration_images
            )
        except ConfigError as exc:
            self.skip(f"{method}/onnxruntime-int8", f"no training split to calibrate on: {exc}", model=bm.label)
            return None
        path = self.out / "work" / "onnx" / f"{bm.label}-{method}-int8-{size}.onnx"
        quantize_int8(self.onnx_for(bm, method, MODEL_GRAPH, size), path, calib)
        self._onnx_cache[key] = path
        return path

    def end_to_end(self, bm: BenchModel, method: str) -> dict[str, float]:
        """``Localizer.predict`` on raw 500x375 images (preprocess -> engine -> native post-processing at the
        original size -> boxes), with the stage times recorded inside ``predict`` (:class:`StageTimes`)."""
        from fcam_deploy.runtime import Localizer
        from fcam_deploy.runtime.localizer import StageTimes

        cfg = self.cfg
        w, h = cfg.e2e_image_size
        rng = np.random.default_rng(1)
        p50: dict[str, float] = {}
        locs = {"torch": Localizer.load(bm.checkpoint, backend="torch", method=method, postprocess="onnx")}
        size = locs["torch"].metadata.input_size[0]
        if "onnxruntime" in cfg.backends:
            locs["onnxruntime"] = Localizer.load(self.onnx_for(bm, method, MODEL_GRAPH, size), backend="onnxruntime")
            if cfg.int8:
                q = self.int8_for(bm, method, size)
                if q is not None:
                    locs["onnxruntime-int8"] = Localizer.load(q, backend="onnxruntime")
        for backend, loc in locs.items():
            for batch in cfg.batches:
                imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(batch)]
                spans: list[StageTimes] = []

                def fn(loc: Any = loc, imgs: list[np.ndarray] = imgs, spans: list[StageTimes] = spans) -> Any:
                    spans.append(StageTimes())
                    return loc.predict(imgs, timings=spans[-1])

                stats, rss = _timed(fn, cfg, batch, None)
                timed = spans[-len(stats.samples_ms) :]  # the warm-up calls are not counted
                stages = {
                    f"{k}_ms": statistics.median(getattr(t, f"{k}_s") for t in timed) * 1e3
                    for k in ("preprocess", "inference", "postprocess")
                }
                total = sum(t.total_s for t in timed)
                stages["postprocess_share"] = sum(t.postprocess_s for t in timed) / total if total else 0.0
                stages["overhead_share"] = 1.0 - sum(t.inference_s for t in timed) / total if total else 0.0
                self.records.append(
                    _latency_record(
                        stats,
                        rss,
                        model=bm.label,
                        arch=bm.arch,
                        method=method,
                        backend=backend,
                        scope="end_to_end",
                        resolution=f"{w}x{h}",
                        threads=loc.threads,
                        postprocessor=loc.postprocessor.__name__,
                        stages=stages,
                    )
                )
                p50[f"{backend}/{batch}"] = stats.p50
                p50[f"{backend}/{batch}/postprocess_share"] = stages["postprocess_share"]
                p50[f"{backend}/{batch}/overhead_share"] = stages["overhead_share"]
                p50[f"{backend}/{batch}/inference_ms"] = stages["inference_ms"]
        for loc in locs.values():
            loc.close()
        return p50

    def precision_localization(self, bm: BenchModel, method: str) -> dict[str, Any] | None:
        """fp32 vs INT8 graph on ORT over the whole test split: MaxBoxAccV2 / PxAP and their difference."""
        from fcam_deploy.export.parity import evaluate_onnx

        size = int(self._native_size[bm.label])
        q = self.int8_for(bm, method, size)
        if q is None:
            return None
        fp = evaluate_onnx(self.onnx_for(bm, method, MODEL_GRAPH, size), self.data)
        i8 = evaluate_onnx(q, self.data)
        agree = float(np.mean(np.asarray(fp["pred_class"]) == np.asarray(i8["pred_class"])))
        map_diff = float(np.mean([np.abs(a - b).mean() for a, b in zip(fp["maps"], i8["maps"], strict=True)]))
        rec = {
            "kind": "precision",
            "model": bm.label,
            "arch": bm.arch,
            "method": method,
            "split": "test",
            "num_images": fp["num_images"],
            "calibration_images": self.cfg.int8_calibration_images,
            "fp32": {k: fp[k] for k in ("MaxBoxAccV2", "PxAP")},
            "int8": {k: i8[k] for k in ("MaxBoxAccV2", "PxAP")},
            "delta": {k: (None if fp[k] is None or i8[k] is None else i8[k] - fp[k]) for k in ("MaxBoxAccV2", "PxAP")},
            "top1_agreement": agree,
            "map_mean_abs_diff": map_diff,
        }
        self.records.append(rec)
        return rec

    def peers(self, bm: BenchModel, model: CAMClassifier | FCAM, size: int, mean: Any, std: Any) -> dict[str, Any]:
        """Per-image cost of GradCAM / GradCAM++ from the ``grad-cam`` package and TorchCAM (autograd, torch eager)
        vs this project's exported closed forms on ONNX Runtime: same weights, same images (model input size,
        batch 1), maps compared after a final min-max. One process; ORT's spinning is off and every timing block
        runs alone."""
        import copy
        import importlib.util

        from fcam_deploy.runtime.ort import OrtRunner

        cfg = self.cfg
        clf = _cam_classifier(model)
        out: dict[str, Any] = {}
        missing = [m for m in ("pytorch_grad_cam", "torchcam") if importlib.util.find_spec(m) is None]
        if missing:
            self.skip("peers", f"not installed: {', '.join(missing)} (pip install grad-cam torchcam)", model=bm.label)
            return out
        import pytorch_grad_cam
        import torchcam.methods

        from fcam_deploy.data import open_dataset
        from fcam_deploy.export.parity import load_split_batches

        n_img = min(cfg.peer_images, len(open_dataset(self.data, "test").image_ids))
        batches, _, _ = load_split_batches(self.data, "test", (size, size), batch_size=1, limit=n_img)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        xs = [((torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255.0) - mean_t) / std_t for b in batches]

        class _Logits(torch.nn.Module):  # the peers want model(x) -> logits
            def __init__(self, m: torch.nn.Module) -> None:
                super().__init__()
                self.m = m.requires_grad_(True)  # F-CAM freezes its classifier; the peers need a graph

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.m(x).logits

        def minmax(a: np.ndarray) -> np.ndarray:
            a = a.astype(np.float64)
            rng_ = a.max() - a.min()
            return (a - a.min()) / rng_ if rng_ > 0 else np.zeros_like(a)

        pkg_cls = {"gradcam": pytorch_grad_cam.GradCAM, "gradcampp": pytorch_grad_cam.GradCAMPlusPlus}
        tc_cls = {"gradcam": torchcam.methods.GradCAM, "gradcampp": torchcam.methods.GradCAMpp}
        for method in cfg.peers:
            runner = OrtRunner(self.onnx_for(bm, method, MODEL_GRAPH, size), threads=0)
            ours = [runner.run(b)["map"][0] for b in batches]
            wrapped = _Logits(copy.deepcopy(clf)).eval()
            layer = dict(wrapped.named_modules())["m." + clf.cam_layer]
            with pkg_cls[method](model=wrapped, target_layers=[layer]) as cam:
                pkg = [cam(input_tensor=x, targets=None)[0] for x in xs]

                def pkg_fn(cam: Any = cam) -> Any:
                    return cam(input_tensor=xs[0], targets=None)

                pkg_stats, _ = _timed(pkg_fn, cfg, 1, None)
            wrapped_tc = _Logits(copy.deepcopy(clf)).eval()
            extractor = tc_cls[method](wrapped_tc, target_layer="m." + clf.cam_layer, input_shape=(3, size, size))
            try:

                def tc_call(x: torch.Tensor, net: Any = wrapped_tc, ext: Any = extractor) -> torch.Tensor:
                    scores = net(x)
                    return ext(class_idx=int(scores.argmax(1)[0]), scores=scores)[0]

                tcs = []
                for x in xs:
                    low = tc_call(x).detach()
                    up = torch.nn.functional.interpolate(
                        low[None].float(), size=(size, size), mode="bilinear", align_corners=False
                    )[0, 0].clamp(0, 1)
                    tcs.append(up.numpy())
                tc_stats, _ = _timed(lambda: tc_call(xs[0]), cfg, 1, None)
            finally:
                extractor.remove_hooks()
            ort_stats, _ = _timed(partial(runner.run, batches[0]), cfg, 1, None)
            runner.close()
            diff_pkg = max(float(np.abs(minmax(a) - minmax(b)).max()) for a, b in zip(ours, pkg, strict=True))
            diff_tc = max(float(np.abs(minmax(a) - minmax(b)).max()) for a, b in zip(ours, tcs, strict=True))
            rec = {
                "kind": "peers",
                "model": bm.label,
                "arch": bm.arch,
                "method": method,
                "resolution": size,
                "images": len(xs),
                "ort_ms": ort_stats.p50,
                "grad_cam_ms": pkg_stats.p50,
                "torchcam_ms": tc_stats.p50,
                "speedup_vs_grad_cam": pkg_stats.p50 / ort_stats.p50,
                "speedup_vs_torchcam": tc_stats.p50 / ort_stats.p50,
                "map_max_abs_diff_vs_grad_cam": diff_pkg,
                "map_max_abs_diff_vs_torchcam": diff_tc,
            }
            self.records.append(rec)
            out[method] = rec
        return out

    def localization(self, bm: BenchModel, model: CAMClassifier | FCAM, method: str, mean: Any, std: Any) -> None:
        from fcam_deploy.data import open_dataset
        from fcam_deploy.metrics.model_eval import evaluate_model

        meta = open_dataset(self.data, "test")
        kw = {"prototypes": self.prototypes} if method == "lpcam" else None
        if method == "lpcam" and self.prototypes is None:
            self.skip("localization/lpcam", "no LPCAM prototypes", model=bm.label)
            return
        if method == "fcam" and not hasattr(model, "decoder"):
            self.skip("localization/fcam", "classifier checkpoint has no F-CAM decoder", model=bm.label)
            return
        res = evaluate_model(
            model,
            meta,
            method,
            mean=tuple(mean),
            std=tuple(std),
            cam_curve_interval=self.cfg.cam_curve_interval,
            limit=self.cfg.localization_limit,
            method_kw=kw,
        )
        self.records.append(
            {
                "kind": "localization",
                "model": bm.label,
                "arch": bm.arch,
                "method": method,
                "MaxBoxAcc": res.get("MaxBoxAcc"),
                "MaxBoxAccV2": res.get("MaxBoxAccV2"),
                "PxAP": res.get("PxAP"),
                "num_images": res.get("num_images"),
            }
        )

    def parity(self, bm: BenchModel, method: str, size: int) -> None:
        from fcam_deploy.export.parity import run_parity

        onnx_path = self.onnx_for(bm, method, "onnx", size)
        rep = run_parity(onnx_path, self.data, checkpoint=bm.checkpoint, limit=self.cfg.parity_limit)
        d = rep.to_dict()
        self.records.append(
            {
                "kind": "parity",
                "model": bm.label,
                "arch": bm.arch,
                "method": method,
                "backend": "onnxruntime",
                "passed": rep.passed,
                "report": d,
            }
        )

    # -- ratios measured side by side ------------------------------------------------------------------
    def evaluator_ratio(self) -> dict[str, Any]:
        from fcam_deploy.metrics import BoxEvaluator
        from fcam_deploy.metrics.fast import fast_engine_available

        if not fast_engine_available():
            return {"skipped": "numba missing: no fast engine"}
        rng = np.random.default_rng(0)
        n = self.cfg.evaluator_maps
        maps = [_blob_map(rng, 224, 224) for _ in range(n)]
        boxes = [
            [
                (
                    int(rng.integers(0, 100)),
                    int(rng.integers(0, 100)),
                    int(rng.integers(120, 224)),
                    int(rng.integers(120, 224)),
                )
            ]
            for _ in range(n)
        ]
        out: dict[str, list[float]] = {}
        results = {}
        for engine in ("fast", "reference", "fast"):
            t0 = time.perf_counter()
            ev = BoxEvaluator(cam_curve_interval=0.001, engine=engine)
            for m, b in zip(maps, boxes):
                ev.accumulate(m, b)
            results[engine] = ev.compute()
            out.setdefault(engine, []).append(time.perf_counter() - t0)
        fast_s = min(out["fast"][1:])  # the first fast run includes numba's JIT compile
        ref_s = out["reference"][0]
        same = (
            results["fast"]["MaxBoxAccV2"] == results["reference"]["MaxBoxAccV2"]
            and results["fast"]["MaxBoxAcc"] == results["reference"]["MaxBoxAcc"]
        )
        return {
            "maps": n,
            "thresholds": 1000,
            "reference_s": ref_s,
            "fast_s": fast_s,
            "speedup": ref_s / fast_s,
            "identical": bool(same),
        }

    def postprocess_ratio(self) -> dict[str, Any]:
        import cv2

        from fcam_deploy.metrics.reference import boxes_at_level
        from fcam_deploy.ops import cam_postprocess, native_status

        rng = np.random.default_rng(0)
        n = self.cfg.postprocess_maps
        low = np.stack([_blob_map(rng, 28, 28) for _ in range(n)]).astype(np.float32)
        tau = 0.5

        def protocol() -> list[list[int]]:
            out = []
            for m in low:
                full = cv2.resize(m, (224, 224), interpolation=cv2.INTER_LINEAR)
                full = (full - full.min()) / max(float(full.max() - full.min()), 1e-12)
                u8 = (full * 255).astype(np.uint8)
                out.append(boxes_at_level(u8, int(tau * u8.max()), False)[0].tolist())
            return out

        t_low = torch.from_numpy(low)

        def op() -> Any:
            return cam_postprocess(t_low, 224, 224, tau, quantize_uint8=True, protocol_boxes=True, max_boxes=1)

        ts: dict[str, list[float]] = {"op": [], "protocol": []}
        for _ in range(5):
            for name, fn in (("op", op), ("protocol", protocol)):
                t0 = time.perf_counter()
                fn()
                ts[name].append(time.perf_counter() - t0)
        op_s, pr_s = statistics.median(ts["op"]), statistics.median(ts["protocol"])
        return {
            "maps": n,
            "shape": "28x28->224x224",
            "native": bool(native_status().available),
            "op_s": op_s,
            "protocol_s": pr_s,
            "speedup": pr_s / op_s,
        }


def _blob_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.08, 0.3) * max(h, w)
        m += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    m += rng.normal(0, 0.02, (h, w))
    m = (m - m.min()) / (m.max() - m.min())
    return m


def _trt_unavailable_reason() -> str | None:
    from fcam_deploy.export.tensorrt import tensorrt_unavailable_reason

    # find_spec("tensorrt") is not enough: a stub-only install (tensorrt-stubs) leaves an importable namespace
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        return f"{reason} (see export/README.md: run `fcam doctor` on a GPU box with TensorRT)"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def run_suite(
    cfg: SuiteConfig,
    out_dir: Path,
    checkpoint: Path | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``cfg`` and return the results document (also what :func:`write_report` writes).

    Args:
        cfg: the suite.
        out_dir: working/output folder (ONNX files and synthetic data go to ``out_dir/work``).
        checkpoint: a trained checkpoint (classifier or F-CAM) to benchmark besides ``cfg.archs``; localization
            is scored only for trained checkpoints.
        data_dir: a dataset in the wsolevaluation layout; default: a small synthetic set is generated.
        progress: print one line per step.
    """
    from fcam_deploy.models import load_checkpoint

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    data = _ensure_data(cfg, data_dir, work)
    run = _Run(cfg, out_dir, data, progress)
    from fcam_deploy.data import open_dataset

    num_classes = open_dataset(data, "test").num_classes
    models: list[BenchModel] = []
    if checkpoint is not None:
        _, ck = load_checkpoint(checkpoint)
        models.append(BenchModel(f"trained-{ck.arch}", Path(checkpoint), ck.arch, True))
    archs = cfg.archs if (cfg.archs or checkpoint is not None) else cfg.fallback_archs
    for arch in archs:
        size = next((r for r in cfg.resolutions if r > 0), int(cfg.synth.get("size", 224)))
        path = _random_checkpoint(arch, num_classes, size, work / "models" / arch)
        models.append(BenchModel(f"random-{arch}", path, arch, False))
    if not models:
        raise ConfigError(f"suite {cfg.name!r} has no archs and no --checkpoint was given: nothing to benchmark")

    ratios: dict[str, Any] = {}
    for bm in models:
        model, ck = load_checkpoint(bm.checkpoint)
        clf = _cam_classifier(model)
        native = int(ck.input_size[0])
        sizes = sorted({native if r == 0 else r for r in cfg.resolutions})
        run.prototypes = None
        methods = cfg.methods if bm.trained or cfg.random_methods is None else cfg.random_methods
        if "lpcam" in methods:
            run.say(f"{bm.label}: fitting LPCAM prototypes")
            run.fit_prototypes(clf, native, ck.mean, ck.std)
        for method in methods:
            if method == "fcam" and not hasattr(model, "decoder"):
                run.skip("fcam", "classifier checkpoint has no F-CAM decoder", model=bm.label)
                continue
            run.say(f"{bm.label}: {method}: FLOPs and latency")
            run.flops(bm, model, method, native)
            for size in sizes:
                run.latency(bm, model, method, size)
            if bm.trained and cfg.localization_limit > 0:
                run.say(f"{bm.label}: {method}: localization")
                run.localization(bm, model, method, ck.mean, ck.std)
            if method in EXPORTABLE and cfg.parity_limit > 0 and "onnxruntime" in cfg.backends:
                run.say(f"{bm.label}: {method}: ORT parity")
                run.parity(bm, method, native)
        run._native_size[bm.label] = native
        if cfg.end_to_end and hasattr(model, "decoder"):
            run.say(f"{bm.label}: end to end")
            p50 = run.end_to_end(bm, "fcam")
            for b in cfg.batches:
                if f"onnxruntime/{b}" not in p50:
                    continue
                entry: dict[str, Any] = {
                    "batch": b,
                    "torch_p50_ms": p50[f"torch/{b}"],
                    "ort_p50_ms": p50[f"onnxruntime/{b}"],
                    "speedup": p50[f"torch/{b}"] / p50[f"onnxruntime/{b}"],
                    "postprocess_share_of_ort": p50[f"onnxruntime/{b}/postprocess_share"],
                    "overhead_share_of_ort": p50[f"onnxruntime/{b}/overhead_share"],
                    "ort_inference_ms": p50[f"onnxruntime/{b}/inference_ms"],
                }
                if f"onnxruntime-int8/{b}" in p50:
                    entry.update(
                        {
                            "ort_int8_p50_ms": p50[f"onnxruntime-int8/{b}"],
                            "speedup_int8": p50[f"torch/{b}"] / p50[f"onnxruntime-int8/{b}"],
                            "postprocess_share_of_ort_int8": p50[f"onnxruntime-int8/{b}/postprocess_share"],
                        }
                    )
                ratios.setdefault("ort_vs_torch_end_to_end", {})[f"{bm.label}, batch {b}"] = entry
            if bm.trained and cfg.int8 and cfg.localization_limit > 0:
                run.say(f"{bm.label}: INT8 vs fp32 localization on the test split")
                rec = run.precision_localization(bm, "fcam")
                if rec is not None:
                    ratios.setdefault("int8_localization", {})[bm.label] = {
                        k: rec[k] for k in ("fp32", "int8", "delta", "top1_agreement", "num_images")
                    }
        if cfg.peers and (bm.trained or cfg.peers_on_random):
            run.say(f"{bm.label}: peers (grad-cam, TorchCAM) vs closed forms on ONNX Runtime")
            got = run.peers(bm, model, native, ck.mean, ck.std)
            if got:
                ratios.setdefault("peers", {})[bm.label] = {
                    m: {
                        k: r[k]
                        for k in (
                            "ort_ms",
                            "grad_cam_ms",
                            "torchcam_ms",
                            "speedup_vs_grad_cam",
                            "speedup_vs_torchcam",
                            "map_max_abs_diff_vs_grad_cam",
                            "map_max_abs_diff_vs_torchcam",
                        )
                    }
                    for m, r in got.items()
                }
    # F-CAM per-image cost vs the gradient CAMs (autograd) on the same backbone, batch 1
    lat = [r for r in run.records if r["kind"] == "latency" and r["batch"] == 1 and r["scope"] == "model"]
    for bm in models:
        f = [
            r["per_image_ms"]
            for r in lat
            if r["model"] == bm.label and r["method"] == "fcam" and r["backend"] == "torch"
        ]
        g = [
            r["per_image_ms"]
            for r in lat
            if r["model"] == bm.label and r["method"] in GRADIENT_METHODS and r["backend"] == "torch-autograd"
        ]
        if f and g:
            ratios.setdefault("fcam_vs_gradient_cams", {})[bm.label] = {
                "fcam_ms": f[0],
                "gradient_mean_ms": float(np.mean(g)),
                "ratio": f[0] / float(np.mean(g)),
                "paper_resnet50": {"fcam_ms": 18.5, "gradient_mean_ms": 37.4, "ratio": 0.49},
            }
    run.say("evaluator and post-process speed-ups")
    ratios["evaluator_speedup"] = run.evaluator_ratio()
    ratios["postprocess_op_speedup"] = run.postprocess_ratio()
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": cfg.name,
        "config": {k: v for k, v in cfg.__dict__.items()},
        "manifest": environment_manifest(),
        "data": str(data),
        "models": [{"label": m.label, "arch": m.arch, "trained": m.trained} for m in models],
        "records": run.records,
        "ratios": ratios,
        "wall_time_s": time.perf_counter() - t_start,
    }
