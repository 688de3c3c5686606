"""The built-in end-to-end demo behind ``fcam demo``: synthesise, train stage 1 + 2, evaluate CAM vs F-CAM.

Settings live in ``configs/demo/{default,quick}.json`` (:class:`DemoConfig`); every deviation from the official
recipe is explained there and in ``fcam_deploy/train/README.md``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcam_deploy.errors import ConfigError

__all__ = ["DemoConfig", "load_demo_config", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """One demo recipe.

    Attributes:
        synth: :class:`fcam_deploy.data.SynthConfig` overrides (size, num_classes, design knobs).
        counts: images per split.
        data_seed: generator seed of the synthetic set.
        classifier_config / classifier_overrides: stage-1 config name and overrides.
        fcam_config / fcam_overrides: stage-2 config name and overrides.
        pretrained: start the classifier trunk from the packaged ImageNet weights (EfficientNet-Lite0 family).
        overlays: number of test images drawn in ``overlays.png``.
        test_curve_interval: CAM threshold step on the test split (0.001 = the papers' 1000 thresholds).
        threads: torch intra-op threads (0 = torch default).
        notes: why these values.
    """

    synth: dict[str, Any]
    counts: dict[str, int]
    data_seed: int = 0
    classifier_config: str = "demo"
    classifier_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    fcam_config: str = "demo"
    fcam_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained: bool = False
    overlays: int = 8
    test_curve_interval: float = 0.01
    threads: int = 0
    notes: str = ""


def load_demo_config(name: str) -> DemoConfig:
    """Load ``configs/demo/<name>.json`` (``default`` or ``quick``)."""
    res = resources.files("fcam_deploy.train").joinpath("configs").joinpath("demo").joinpath(f"{name}.json")
    if not res.is_file():
        raise ConfigError(f"no demo config {name!r} (use 'default' or 'quick')")
    data = json.loads(res.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(DemoConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"demo/{name}.json: unknown key(s) {unknown}")
    return DemoConfig(**data)


def _overlays(
    path: Path,
    images: list[np.ndarray],
    cams: list[np.ndarray],
    fmaps: list[np.ndarray],
    gts: list[list[tuple[int, ...]]],
    tau_cam: float,
    tau_fcam: float,
    titles: list[str],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from fcam_deploy.metrics.reference import boxes_from_scoremap

    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    for r in range(n):
        img = images[r]
        bc = boxes_from_scoremap(cams[r].astype(np.float64), [tau_cam], multi_contour=False)[0]
        bf = boxes_from_scoremap(fmaps[r].astype(np.float64), [tau_fcam], multi_contour=False)[0]
        panels = [
            (img, "image + GT"),
            (cams[r], f"CAM (tau={tau_cam:.2f})"),
            (fmaps[r], f"F-CAM fg prob (tau={tau_fcam:.2f})"),
            (img, "boxes: GT / CAM / F-CAM"),
        ]
        for c, (arr, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(arr, cmap=None if arr.ndim == 3 else "jet", vmin=0, vmax=1 if arr.ndim == 2 else None)
            ax.set_title(title if r == 0 else "", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c in (0, 3):
                for b in gts[r]:
                    ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=1.5))
            if c == 3:
                for boxes, col in ((bc, "red"), (bf, "cyan")):
                    for b in boxes[:1]:
                        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec=col, lw=1.5))
        axes[r][0].set_ylabel(titles[r], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_demo(
    out: Path, quick: bool = False, seed: int | None = None, progress: bool = True, bench: bool = True
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the ``results.json`` document.

    Writes ``out/data`` (the synthetic set), ``out/runs/{classifier,fcam}`` (training runs), ``out/model`` (the
    selected F-CAM checkpoint), ``out/results.json``, ``out/report.md`` and ``out/overlays.png``; with ``bench``
    it ends with a benchmark suite on the trained model (``quick``; the ``smoke`` suite for ``quick=True``) in
    ``out/bench/`` whose headline ratios are copied into ``results.json`` and ``report.md``.
    """
    from fcam_deploy.cams import compute_maps
    from fcam_deploy.data import SynthConfig, WSOLDataset, generate_synthetic, open_dataset
    from fcam_deploy.metrics.model_eval import evaluate_model
    from fcam_deploy.models import FCAM
    from fcam_deploy.models.checkpoint import load_checkpoint
    from fcam_deploy.train.config import config_to_dict, load_train_config
    from fcam_deploy.train.engine import evaluate_split, train_classifier, train_fcam

    t_all, c_all = time.perf_counter(), time.process_time()
    dcfg = load_demo_config("quick" if quick else "default")
    if dcfg.threads > 0:
        torch.set_num_threads(dcfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}  # process CPU time (all threads): the machine may be shared
    s_over: dict[str, Any] = {}
    if seed is not None:
        s_over = {"seed": int(seed)}
    data_seed = dcfg.data_seed if seed is None else int(seed)

    t, c = time.perf_counter(), time.process_time()
    synth_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in dcfg.synth.items()}
    scfg = SynthConfig(**synth_kw)  # type: ignore[arg-type]  # checked by SynthConfig.__post_init__
    data_dir = out / "data"
    generate_synthetic(data_dir, scfg, dcfg.counts, seed=data_seed, overwrite=True, progress=progress)
    timings["synth_s"] = time.perf_counter() - t
    cpu_timings["synth_s"] = time.process_time() - c

    ccfg = load_train_config("classifier", dcfg.classifier_config, {**dcfg.classifier_overrides, **s_over})
    fcfg = load_train_config("fcam", dcfg.fcam_config, {**dcfg.fcam_overrides, **s_over})
    runs = out / "runs"
    for sub in ("classifier", "fcam"):
        if (runs / sub).exists():
            shutil.rmtree(runs / sub)
    pretrained = None
    if dcfg.pretrained:
        from fcam_deploy.models.pretrained import efficientnet_lite0_weights_path

        pretrained = efficientnet_lite0_weights_path()
    t, c = time.perf_counter(), time.process_time()
    r1 = train_classifier(ccfg, data_dir, runs / "classifier", pretrained=pretrained, progress=progress)  # type: ignore[arg-type]
    timings["stage1_s"] = time.perf_counter() - t
    cpu_timings["stage1_s"] = time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    r2 = train_fcam(fcfg, r1.best_dir, data_dir, runs / "fcam", progress=progress)  # type: ignore[arg-type]
    timings["stage2_s"] = time.perf_counter() - t
    cpu_timings["stage2_s"] = time.process_time() - c

    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(r2.best_dir, model_dir)

    # Test figures through the same function as `fcam eval` / `fcam bench` (the model at its input size, maps
    # resized to the protocol's 224 frame), on the selected F-CAM checkpoint (its frozen classifier gives the CAM).
    t, c = time.perf_counter(), time.process_time()
    test = open_dataset(data_dir, "test")
    fcam, fmeta = load_checkpoint(model_dir)
    size = int(fmeta.input_size[0])
    ev = {"mean": tuple(fmeta.mean), "std": tuple(fmeta.std), "cam_curve_interval": dcfg.test_curve_interval}
    res_cam = evaluate_model(fcam, test, "cam", **ev)  # type: ignore[arg-type]
    res_fcam = evaluate_model(fcam, test, "fcam", **ev)  # type: ignore[arg-type]
    ones = [np.ones((size, size)) for _ in test.image_ids]
    res_whole = evaluate_split(ones, test, with_masks=True, cam_curve_interval=dcfg.test_curve_interval)
    top1 = float(res_cam["classification"]["top1"])
    timings["eval_s"] = time.perf_counter() - t
    cpu_timings["eval_s"] = time.process_time() - c

    def pick(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "MaxBoxAcc": r["MaxBoxAcc"],
            "MaxBoxAccV2": r["MaxBoxAccV2"],
            "PxAP": r["PxAP"],
            "per_iou": r.get("per_iou"),
            "best_threshold": r.get("best_threshold"),
        }

    t, c = time.perf_counter(), time.process_time()
    ds = WSOLDataset(test, data_dir / "images", train=False, size=size, mean=fmeta.mean, std=fmeta.std)
    k = min(dcfg.overlays, len(ds))
    idx = list(range(k))
    items = [ds[i] for i in idx]
    x = torch.stack([it["image"] for it in items])
    y = torch.stack([it["label"] for it in items])
    with torch.no_grad():
        assert isinstance(fcam, FCAM)
        cam_maps = compute_maps(fcam.classifier, x, "cam", classes=y).full.numpy()
        f_maps = compute_maps(fcam, x, "fcam", classes=y).full.numpy()
    imgs = [it["raw"].permute(1, 2, 0).numpy() / 255.0 for it in items]
    gts = []
    for i in idx:
        iid = test.image_ids[i]
        w, h = test.sizes[iid]
        gts.append([tuple(int(v * size / (w if j % 2 == 0 else h)) for j, v in enumerate(b)) for b in test.boxes[iid]])
    tau_c = float(res_cam["best_threshold"].get("MaxBoxAcc", 0.5))
    tau_f = float(fmeta.threshold if fmeta.threshold is not None else 0.5)
    _overlays(
        out / "overlays.png",
        imgs,
        [m.astype(np.float32) for m in cam_maps],
        [m.astype(np.float32) for m in f_maps],
        gts,
        tau_c,
        tau_f,
        [test.image_ids[i] for i in idx],
    )
    timings["overlays_s"] = time.perf_counter() - t
    cpu_timings["overlays_s"] = time.process_time() - c
    bench_doc: dict[str, Any] | None = None
    if bench:
        from fcam_deploy.bench.report import write_report
        from fcam_deploy.bench.runner import run_suite
        from fcam_deploy.bench.suite import load_suite

        t, c = time.perf_counter(), time.process_time()
        suite = load_suite("smoke" if quick else "quick")
        bench_doc = run_suite(suite, out / "bench", checkpoint=model_dir, data_dir=data_dir, progress=progress)
        write_report(
            bench_doc,
            out / "bench",
            command=f"fcam bench --suite {suite.name} --checkpoint {model_dir} --data {data_dir} --out {out / 'bench'}",
        )
        timings["bench_s"] = time.perf_counter() - t
        cpu_timings["bench_s"] = time.process_time() - c
    timings["total_s"] = time.perf_counter() - t_all
    cpu_timings["total_s"] = time.process_time() - c_all

    results: dict[str, Any] = {
        "methods": {"cam": pick(res_cam), "fcam": pick(res_fcam)},
        "baselines": {
            "whole_image": {
                "MaxBoxAcc": res_whole["MaxBoxAcc"],
                "MaxBoxAccV2": res_whole["MaxBoxAccV2"],
                "PxAP": res_whole["PxAP"],
            }
        },
        "classifier_top1": top1,
        "selected": {
            "classifier_epoch": r1.best_epoch,
            "fcam_epoch": r2.best_epoch,
            "fcam_threshold": tau_f,
            "select_metric": fcfg.select_metric,
        },
        "timings": {k2: round(v, 2) for k2, v in timings.items()},
        "cpu_timings": {k2: round(v, 2) for k2, v in cpu_timings.items()},
        "config": {
            "demo": dataclasses.asdict(dcfg),
            "quick": quick,
            "seed": seed,
            "classifier": config_to_dict(ccfg),
            "fcam": config_to_dict(fcfg),
        },
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "benchmark": _bench_summary(bench_doc),
        "num_test_images": len(test.image_ids),
        "input_size": [size, size],
        "test_curve_interval": dcfg.test_curve_interval,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_report(results), encoding="utf-8")
    return results


def _bench_summary(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The benchmark's per-method accuracy / cost table and headline ratios, for results.json."""
    if doc is None:
        return None
    recs = doc["records"]
    methods: dict[str, dict[str, Any]] = {}
    for r in recs:
        if r["kind"] == "localization":
            methods.setdefault(r["method"], {}).update({k: r[k] for k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP")})
        elif r["kind"] == "flops":
            methods.setdefault(r["method"], {})["GMAC"] = r.get("autograd_gmac") or r.get("torch_gmac")
        elif r["kind"] == "latency" and r["scope"] == "model" and r["batch"] == 1:
            methods.setdefault(r["method"], {})[f"{r['backend']}_ms"] = r["per_image_ms"]
    parity = {r["method"]: r["passed"] for r in recs if r["kind"] == "parity"}
    return {
        "suite": doc["suite"],
        "report": "bench/report.md",
        "methods": methods,
        "parity_passed": parity,
        "ratios": doc["ratios"],
        "wall_time_s": round(doc["wall_time_s"], 1),
    }


def _report(r: dict[str, Any]) -> str:
    m = r["methods"]
    b = r["baselines"]["whole_image"]
    rows = [
        ("CAM (stage-1 classifier, GT class)", m["cam"]),
        ("F-CAM (decoder, fg probability)", m["fcam"]),
        ("whole-image map (baseline)", b),
    ]
    lines = [
        "# fcam demo report",
        "",
        (
            f"Synthetic WSOL set ({r['num_test_images']} test images), CPU only, "
            f"{'--quick smoke run' if r['config']['quick'] else 'default run'}."
        ),
        "",
        "| method | MaxBoxAcc | MaxBoxAccV2 | PxAP |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, v in rows:
        lines.append(f"| {name} | {v['MaxBoxAcc']:.1f} | {v['MaxBoxAccV2']:.1f} | {v['PxAP']:.1f} |")
    d_v2 = m["fcam"]["MaxBoxAccV2"] - m["cam"]["MaxBoxAccV2"]
    d_px = m["fcam"]["PxAP"] - m["cam"]["PxAP"]
    lines += [
        "",
        (
            f"F-CAM vs CAM: MaxBoxAccV2 {d_v2:+.1f} points, PxAP {d_px:+.1f} points. "
            f"Classifier top-1 on test: {r['classifier_top1']:.1f} %."
        ),
        "",
        (
            f"Selected epochs (validation {r['selected']['select_metric']}, epoch 0 included): classifier "
            f"{r['selected']['classifier_epoch']}, F-CAM {r['selected']['fcam_epoch']}; F-CAM threshold tau = "
            f"{r['selected']['fcam_threshold']}."
        ),
        "",
        "Timings (s, wall): " + ", ".join(f"{k} {v}" for k, v in r["timings"].items()),
        "",
        "Process CPU time (s, all threads): " + ", ".join(f"{k} {v}" for k, v in r.get("cpu_timings", {}).items()),
        "",
        (
            "Metrics follow wsolevaluation (maps resized to 224x224; MaxBoxAcc = IoU 50 largest contour; "
            "MaxBoxAccV2 = mean over IoU 30/50/70, all contours; PxAP from pooled histograms). "
            "`overlays.png`: image, CAM, F-CAM map, boxes (green GT, red CAM, cyan F-CAM)."
        ),
        "",
        "`model/` is the selected F-CAM checkpoint (safetensors + config.json with the threshold).",
        "",
    ]
    b = r.get("benchmark")
    if b:
        lines += [
            (
                f"## Every method: accuracy, cost, parity (benchmark suite `{b['suite']}`, full report in "
                f"`{b['report']}`)"
            ),
            "",
            (
                "| method | MaxBoxAcc | MaxBoxAccV2 | PxAP | GMAC/img | torch ms/img | "
                "autograd ms/img | ONNX Runtime ms/img | ORT parity |"
            ),
            ("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"),
        ]

        def f(v: Any, nd: int = 1) -> str:
            return "–" if v is None else f"{v:.{nd}f}"

        for name, v in b["methods"].items():
            par = b["parity_passed"].get(name)
            lines.append(
                f"| {name} | {f(v.get('MaxBoxAcc'))} | {f(v.get('MaxBoxAccV2'))} | {f(v.get('PxAP'))} | "
                f"{f(v.get('GMAC'), 3)} | {f(v.get('torch_ms'), 2)} | {f(v.get('torch-autograd_ms'), 2)} | "
                f"{f(v.get('onnxruntime_ms'), 2)} | {'–' if par is None else ('pass' if par else 'FAIL')} |"
            )
        from fcam_deploy.bench.report import headline_ratio_lines

        lines.append("")
        lines += headline_ratio_lines(b["ratios"])
        lines.append("")
    return "\n".join(lines)
