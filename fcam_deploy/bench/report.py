"""Write a benchmark results document as ``results.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from fcam_deploy._io import atomic_write_text

__all__ = ["headline_ratio_lines", "render_markdown", "write_report"]


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def headline_ratio_lines(rat: dict[str, Any]) -> list[str]:
    """Markdown bullet lines of a results document's ``ratios`` (also used by ``fcam demo``'s report)."""
    lines: list[str] = []
    for label, r in rat.get("ort_vs_torch_end_to_end", {}).items():
        line = (
            f"- Exported pipeline on ONNX Runtime CPU vs torch eager, end to end (500x375 images, native "
            f"post-processing at the original size on both), {label}: {r['torch_p50_ms']:.1f} ms vs "
            f"{r['ort_p50_ms']:.1f} ms = **{r['speedup']:.2f}x** fp32"
        )
        if "speedup_int8" in r:
            line += f", {r['ort_int8_p50_ms']:.1f} ms = **{r['speedup_int8']:.2f}x** INT8"
        line += (
            f" (goal >= 2x); measured inside predict: post-processing **{100 * r['postprocess_share_of_ort']:.1f}%**"
            f" of the ORT pipeline, everything but the engine call {100 * r['overhead_share_of_ort']:.1f}%."
        )
        lines.append(line)
    for label, r in rat.get("int8_localization", {}).items():
        d = r["delta"]
        lines.append(
            f"- INT8 vs fp32 graph on ONNX Runtime, {label}, test split ({r['num_images']} images): "
            f"MaxBoxAccV2 {_fmt(r['fp32']['MaxBoxAccV2'], 2)} -> {_fmt(r['int8']['MaxBoxAccV2'], 2)} "
            f"(**{_fmt(d['MaxBoxAccV2'], 2)}**), PxAP {_fmt(r['fp32']['PxAP'], 2)} -> "
            f"{_fmt(r['int8']['PxAP'], 2)} (**{_fmt(d['PxAP'], 2)}**) (goal within 0.5 points); top-1 "
            f"agreement {100 * r['top1_agreement']:.1f}%."
        )
    for label, per in rat.get("peers", {}).items():
        for meth, r in per.items():
            lines.append(
                f"- {meth} per image, {label}, batch 1 at the model size: closed form on ONNX Runtime "
                f"{r['ort_ms']:.2f} ms vs grad-cam package {r['grad_cam_ms']:.2f} ms (**{r['speedup_vs_grad_cam']:.1f}x**, "
                f"goal >= 5x) vs TorchCAM {r['torchcam_ms']:.2f} ms (**{r['speedup_vs_torchcam']:.1f}x**); "
                f"maps max |diff| {r['map_max_abs_diff_vs_grad_cam']:.1e} / {r['map_max_abs_diff_vs_torchcam']:.1e}."
            )
    for label, r in rat.get("fcam_vs_gradient_cams", {}).items():
        lines.append(
            f"- F-CAM per image vs the gradient CAMs through autograd, {label}, batch 1: {r['fcam_ms']:.2f} ms vs "
            f"{r['gradient_mean_ms']:.2f} ms = **{r['ratio']:.2f}x** (paper, ResNet50 GPU: 18.5 vs 37.4 ms, 0.49x)."
        )
    ev = rat.get("evaluator_speedup", {})
    if "speedup" in ev:
        lines.append(
            f"- Evaluator, MaxBoxAccV2 at 1000 thresholds on {ev['maps']} maps: reference {ev['reference_s']:.2f} s "
            f"vs fast {ev['fast_s']:.3f} s = **{ev['speedup']:.1f}x**, identical numbers: {ev['identical']}."
        )
    pp = rat.get("postprocess_op_speedup", {})
    if "speedup" in pp:
        lines.append(
            f"- Post-process op ({'native C++' if pp['native'] else 'NumPy reference fallback'}) vs the protocol's "
            f"cv2 path, {pp['maps']} maps {pp['shape']}: {pp['protocol_s'] * 1e3:.1f} ms vs {pp['op_s'] * 1e3:.1f} ms "
            f"= **{pp['speedup']:.2f}x**."
        )
    return lines


def render_markdown(doc: dict[str, Any], command: str | None = None) -> str:
    """The report: methods table, backends table, parity, headline ratios, skipped legs, environment."""
    recs = doc["records"]
    lines = [f"# fcam-deploy benchmark — suite `{doc['suite']}`", ""]
    if command:
        lines += ["Made with:", "", f"    {command}", ""]
    m = doc["manifest"]
    lines += [
        (
            f"Machine: {m['cpu']} ({m['cpu_count']} CPUs, torch threads {m['torch_threads']}), GPUs: "
            f"{', '.join(g['name'] for g in m['gpus']) or 'none'}; torch {m['torch']}, onnxruntime {m['onnxruntime']} "
            f"({', '.join(m['onnxruntime_providers'] or [])}), TensorRT {m['tensorrt'] or 'absent'}. "
            f"Wall time {doc['wall_time_s']:.0f} s."
        ),
        "",
    ]
    lat = [r for r in recs if r["kind"] == "latency"]
    loc = {(r["model"], r["method"]): r for r in recs if r["kind"] == "localization"}
    flops = {(r["model"], r["method"]): r for r in recs if r["kind"] == "flops"}
    backends = sorted({r["backend"] for r in lat if r["scope"] == "model"})
    for model in [x["label"] for x in doc["models"]]:
        lines += [
            f"## {model}",
            "",
            (
                "Methods (latency: model scope, batch 1, p50 ms per image; GMAC per image "
                "at the model's input size, forward-only graph / with the autograd backward):"
            ),
            "",
        ]
        head = (
            "| method | MaxBoxAcc | MaxBoxAccV2 | PxAP | GMAC graph | GMAC ONNX | GMAC autograd | "
            + " | ".join(f"{b} ms" for b in backends)
            + " |"
        )
        lines += [head, "|" + "---|" * (7 + len(backends))]
        methods = sorted(
            {r["method"] for r in recs if r.get("model") == model and "method" in r},
            key=lambda s: (
                ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "lpcam", "fcam").index(s)
                if s in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "lpcam", "fcam")
                else 99
            ),
        )
        for meth in methods:
            lr = loc.get((model, meth), {})
            fr = flops.get((model, meth), {})
            cells = []
            for b in backends:
                v = [
                    r["per_image_ms"]
                    for r in lat
                    if r["model"] == model
                    and r["method"] == meth
                    and r["backend"] == b
                    and r["batch"] == 1
                    and r["scope"] == "model"
                ]
                cells.append(_fmt(v[0], 2) if v else "–")
            lines.append(
                f"| {meth} | {_fmt(lr.get('MaxBoxAcc'))} | {_fmt(lr.get('MaxBoxAccV2'))} | "
                f"{_fmt(lr.get('PxAP'))} | {_fmt(fr.get('torch_gmac'), 3)} | {_fmt(fr.get('onnx_gmac'), 3)} | "
                f"{_fmt(fr.get('autograd_gmac'), 3)} | " + " | ".join(cells) + " |"
            )
        lines.append("")
        # backends x batch (F-CAM if present, else CAM)
        meth = "fcam" if any(r["method"] == "fcam" for r in lat if r["model"] == model) else "cam"
        lines += [
            (
                f"Backends ({meth}, model scope and end to end; p50 / p99 ms per call, speed-up vs torch eager "
                "at the same batch; end-to-end stage medians measured inside predict):"
            ),
            "",
            (
                "| scope | backend | batch | p50 ms | p99 ms | images/s | speed-up | preprocess / engine / post ms "
                "| post share |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        base = {
            (r["scope"], r["batch"]): r["p50_ms"]
            for r in lat
            if r["model"] == model and r["method"] == meth and r["backend"] == "torch"
        }
        for r in sorted(
            (r for r in lat if r["model"] == model and r["method"] == meth),
            key=lambda r: (r["scope"], r["backend"], r["batch"]),
        ):
            sp = base.get((r["scope"], r["batch"]))
            st = r.get("stages") or {}
            stages = f"{st['preprocess_ms']:.2f} / {st['inference_ms']:.2f} / {st['postprocess_ms']:.2f}" if st else "–"
            share = f"{100 * st['postprocess_share']:.1f}%" if st else "–"
            lines.append(
                f"| {r['scope']} | {r['backend']} | {r['batch']} | {_fmt(r['p50_ms'], 2)} | "
                f"{_fmt(r['p99_ms'], 2)} | {_fmt(r['throughput_ips'])} | "
                f"{_fmt(sp / r['p50_ms'], 2) + 'x' if sp else '–'} | {stages} | {share} |"
            )
        lines.append("")
        par = [r for r in recs if r["kind"] == "parity" and r["model"] == model]
        if par:
            lines += [
                (
                    "Parity, ONNX Runtime CPU vs PyTorch (same graph, same test images; tie pixels are mask pixels "
                    "within the parity tolerance of the threshold):"
                ),
                "",
                (
                    "| method | images | passed | map max abs diff | mask pixels differ (non-tie) | images with "
                    "different boxes (non-tie) | ΔMaxBoxAccV2 | ΔPxAP |"
                ),
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in par:
                d = r["report"]
                c = (d.get("comparisons") or [{}])[0]
                md = d.get("metrics_max_abs_diff") or {}
                lines.append(
                    f"| {r['method']} | {d.get('num_images')} | {r['passed']} | "
                    f"{_fmt((c.get('max_abs_diff') or {}).get('map'), 7)} | {c.get('mask_pixels_differ')} "
                    f"({c.get('mask_pixels_differ_non_tie')}) | {c.get('box_images_differ')} "
                    f"({c.get('box_images_differ_non_tie')}) | {_fmt(md.get('MaxBoxAccV2'), 4)} | "
                    f"{_fmt(md.get('PxAP'), 4)} |"
                )
            lines.append("")
    lines += ["## Headline ratios (each measured side by side in this run)", ""]
    lines += headline_ratio_lines(doc.get("ratios", {}))
    lines.append("")
    skipped = [r for r in recs if r["kind"] == "skipped"]
    if skipped:
        lines += ["## Not measured here", ""]
        seen = set()
        for r in skipped:
            key = (r["what"].split("/")[-1], r["reason"])
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- {r['what']}: {r['reason']}")
        lines.append("")
    return "\n".join(lines)


def _plots(doc: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = doc["records"]
    lat = [r for r in recs if r["kind"] == "latency" and r["scope"] == "model"]
    written: list[Path] = []
    # accuracy vs latency (Pareto front), batch 1, torch-family backend per method
    loc = [r for r in recs if r["kind"] == "localization" and r.get("MaxBoxAccV2") is not None]
    if loc:
        fig, ax = plt.subplots(figsize=(6, 4))
        pts = []
        for r in loc:
            ms = [
                x["per_image_ms"]
                for x in lat
                if x["model"] == r["model"]
                and x["method"] == r["method"]
                and x["batch"] == 1
                and x["backend"] in ("torch-autograd", "torch")
            ]
            if ms:
                t = max(ms)  # the autograd path where the method has one (what a torch user pays)
                pts.append((t, r["MaxBoxAccV2"], r["method"]))
                ax.scatter(t, r["MaxBoxAccV2"])
                ax.annotate(r["method"], (t, r["MaxBoxAccV2"]), fontsize=8)
        front: list[tuple[float, float]] = []
        for t, a, _ in sorted(pts):
            if not front or a > front[-1][1]:
                front.append((t, a))
        if front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("latency per image, batch 1 (ms, log)")
        ax.set_ylabel("MaxBoxAccV2 (%)")
        ax.set_title("accuracy vs latency")
        fig.tight_layout()
        p = out / "accuracy_vs_latency.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)
    # latency vs batch per backend (F-CAM or CAM)
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for r in lat:
        if r["method"] in ("fcam",) or (r["method"] == "cam" and not any(x["method"] == "fcam" for x in lat)):
            series[f"{r['model']} {r['backend']} @{r['resolution']}"][r["batch"]] = r["per_image_ms"]
    if series:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts_b in sorted(series.items()):
            bs = sorted(pts_b)
            ax.plot(bs, [pts_b[b] for b in bs], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_ylabel("p50 ms per image")
        ax.set_title("latency vs batch")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "latency_vs_batch.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)
    fl = [r for r in recs if r["kind"] == "flops"]
    if fl:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['method']}\n{r['model'].split('-', 1)[-1]}" for r in fl]
        fwd = [r.get("torch_gmac") or 0.0 for r in fl]
        bwd = [max((r.get("autograd_gmac") or 0.0) - (r.get("torch_gmac") or 0.0), 0.0) for r in fl]
        ax.bar(range(len(fl)), fwd, label="forward (graph)")
        ax.bar(range(len(fl)), bwd, bottom=fwd, label="extra for autograd backward")
        ax.set_xticks(range(len(fl)), labels, fontsize=6, rotation=60)
        ax.set_ylabel("GMAC per image")
        ax.set_title("FLOPs per method")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "flops_per_method.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)
    return written


def write_report(doc: dict[str, Any], out_dir: Path, command: str | None = None, plots: bool = True) -> list[Path]:
    """Write ``results.json`` (raw samples included), ``report.md`` and the PNG plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {**doc, "command": command}
    atomic_write_text(out_dir / "results.json", json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write_text(out_dir / "report.md", render_markdown(doc, command) + "\n")
    written = [out_dir / "results.json", out_dir / "report.md"]
    if plots:
        written += _plots(doc, out_dir)
    return written
