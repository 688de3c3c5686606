"""LPCAM on a WSOL classifier: selection thresholds chosen on the validation split, the official split CAM vs the
feature-resolution one, multi-scale / flip inference, class-balanced fitting, the memory cap.

Every LPCAM variant is fitted on the training split (N images per class), its thresholds are chosen on the
validation split (MaxBoxAccV2 of the LPCAM maps, :func:`fcam_deploy.cams.select_lpcam_thresholds`), and it is
scored once on the test split (MaxBoxAcc, MaxBoxAccV2, PxAP in the 224 frame, threshold step 0.01). Costs are
process CPU seconds (the machine is shared).

    python benchmarks/lpcam/run.py --classifier DEMO/runs/classifier/best --data DEMO/data \\
        --out benchmarks/lpcam/results

(``fcam demo --out DEMO`` makes both.) Writes ``results.json`` and ``results.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fcam_deploy.cams import (
    OFFICIAL_SCALES,
    LPCAMClusters,
    LPCAMHead,
    LPCAMPrototypes,
    MissingContextWarning,
    class_balanced_indices,
    cluster_lpcam,
    compute_maps,
    select_lpcam_thresholds,
)
from fcam_deploy.cams.lpcam import DEFAULT_THRESHOLD_GRID, split_cams
from fcam_deploy.data import WSOLDataset, open_dataset
from fcam_deploy.metrics import RESIZE_LENGTH, evaluate_maps
from fcam_deploy.models.checkpoint import load_checkpoint

VOC = {"fg_threshold": 0.9, "bg_band": (0.05, 0.9)}


def _batches(ds: Any, idx: list[int], bs: int) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    out = []
    for i in range(0, len(idx), bs):
        items = [ds[j] for j in idx[i : i + bs]]
        out.append(
            (
                torch.stack([it["image"] for it in items]),
                torch.stack([it["label"] for it in items]),
                [it["image_id"] for it in items],
            )
        )
    return out


def _frame(maps_full: torch.Tensor) -> np.ndarray:
    """(N, S, S) maps in [0, 1] at the input size -> the protocol's 224 frame (bilinear, as the demo's evaluation)."""
    t = F.interpolate(
        maps_full[:, None].double(), size=(RESIZE_LENGTH, RESIZE_LENGTH), mode="bilinear", align_corners=False
    )[:, 0]
    return t.clamp(0, 1).numpy()


def _score(maps: dict[str, np.ndarray], meta: Any) -> dict[str, float]:
    r = evaluate_maps(maps, meta, mask_root=meta.mask_root, cam_curve_interval=0.01)
    return {k: float(r[k]) for k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP") if r.get(k) is not None}


class _Features:
    """Target-layer activations of a split at one scale (optionally flip-summed), cached once."""

    def __init__(self, clf: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor, list[str]]]) -> None:
        self.items = []
        with torch.no_grad():
            for x, y, ids in batches:
                a = clf.features(x)[-1]
                self.items.append((a, y, ids, x.shape[-2:]))

    def maps(self, protos: LPCAMPrototypes) -> dict[str, np.ndarray]:
        head = LPCAMHead(normalize=True)
        out: dict[str, np.ndarray] = {}
        for a, y, ids, size in self.items:
            vec, has_bg, _ = protos.class_vectors(a.device, a.dtype)
            low = head(a, vec, has_bg, y)
            full = F.interpolate(low[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
            out.update(zip(ids, _frame(full), strict=True))
        return out


def _method_maps(
    clf: torch.nn.Module, batches: list[Any], method: str, **kw: Any
) -> tuple[dict[str, np.ndarray], float]:
    t = time.process_time()
    out: dict[str, np.ndarray] = {}
    n = 0
    for x, y, ids in batches:
        res = compute_maps(clf, x, method, y, **kw)
        out.update(zip(ids, _frame(res.full), strict=True))
        n += len(ids)
    return out, (time.process_time() - t) / max(n, 1)


def _fit(clf: torch.nn.Module, batches: list[Any], **kw: Any) -> tuple[LPCAMClusters, float]:
    t = time.process_time()
    clusters = cluster_lpcam(clf, [(x, y) for x, y, _ in batches], seed=0, **kw)
    return clusters, time.process_time() - t


def _select(clusters: LPCAMClusters, val: _Features, val_meta: Any) -> tuple[Any, list[dict[str, Any]]]:
    search = select_lpcam_thresholds(
        clusters, lambda p: _score(val.maps(p), val_meta)["MaxBoxAccV2"], DEFAULT_THRESHOLD_GRID
    )
    return search, search.table


def _counts(p: LPCAMPrototypes) -> dict[str, list[int]]:
    return {str(c): list(v) for c, v in sorted(p.counts().items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--classifier", type=Path, required=True, help="classifier checkpoint dir (fcam demo: runs/classifier/best)"
    )
    ap.add_argument("--data", type=Path, required=True, help="WSOL dataset root (train/val/test)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=100, help="training images per class for fitting (100)")
    ap.add_argument("--threads", type=int, default=2)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start, c_start = time.perf_counter(), time.process_time()
    clf, meta = load_checkpoint(args.classifier)
    clf.eval()
    size = int(meta.input_size[0])
    splits = {}
    for name in ("train", "val", "test"):
        m = open_dataset(args.data, name)
        splits[name] = (m, WSOLDataset(m, args.data / "images", train=False, size=size, mean=meta.mean, std=meta.std))
    tr_meta, tr_ds = splits["train"]
    labels = [tr_meta.labels[i] for i in tr_meta.image_ids]
    bal_idx = class_balanced_indices(labels, per_class=args.per_class, seed=0)
    first_idx = list(range(min(len(labels), len(bal_idx))))
    fit_bal = _batches(tr_ds, bal_idx, 32)
    fit_first = _batches(tr_ds, first_idx, 32)
    val_meta, val_ds = splits["val"]
    te_meta, te_ds = splits["test"]
    val_b = _batches(val_ds, list(range(len(val_ds))), 50)
    te_b = _batches(te_ds, list(range(len(te_ds))), 50)
    val_f, te_f = _Features(clf, val_b), _Features(clf, te_b)
    res: dict[str, Any] = {
        "command": "python benchmarks/lpcam/run.py " + " ".join(argv),
        "classifier": str(args.classifier),
        "arch": meta.arch,
        "input_size": size,
        "num_classes": meta.num_classes,
        "fit_images_per_class": args.per_class,
        "splits": {k: len(v[1]) for k, v in splits.items()},
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
    }
    cam_maps, cam_cost = _method_maps(clf, te_b, "cam")
    res["cam_test"] = _score(cam_maps, te_meta)

    # 1. the split: official (4 scales x flip, up / nearest down) vs feature resolution; thresholds per variant
    variants: dict[str, Any] = {}
    fits: dict[str, LPCAMClusters] = {}
    for name, kw in (
        ("official", {"split": "official"}),
        ("official_1scale", {"split": "official", "split_scales": (1.0,)}),
        ("feature", {"split": "feature"}),
    ):
        clusters, cost = _fit(clf, fit_bal, **kw)
        fits[name] = clusters
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingContextWarning)
            voc = clusters.select(**VOC)
        search, table = _select(clusters, val_f, val_meta)
        variants[name] = {
            "fit_cpu_s": cost,
            "fit_cpu_s_per_image": cost / len(bal_idx),
            "voc": {
                "counts": _counts(voc),
                "warned": bool(caught),
                "val": _score(val_f.maps(voc), val_meta),
                "test": _score(te_f.maps(voc), te_meta),
            },
            "chosen": {
                "thresholds": {"fg_threshold": search.best["fg_threshold"], "bg_band": list(search.best["bg_band"])},
                "counts": _counts(search.prototypes),
                "val": _score(val_f.maps(search.prototypes), val_meta),
                "test": _score(te_f.maps(search.prototypes), te_meta),
            },
            "grid": table,
        }
        print(name, json.dumps({k: variants[name][k] for k in ("voc", "chosen")}), flush=True)
    res["split"] = variants
    # cells labelled differently (FG vs BG at 0.1) by the feature split and the official ones, on the fit images
    diff = {"official_1scale": [], "official": []}
    with torch.no_grad():
        for x, y, _ in fit_bal:
            a = clf.features(x)[-1]
            wc = clf.head.weight[y]

            def cap(images: torch.Tensor) -> torch.Tensor:
                return clf.features(images)[-1]

            base = split_cams(cap, x, a, wc, mode="feature") > 0.1
            for key, scales in (("official_1scale", (1.0,)), ("official", OFFICIAL_SCALES)):
                other = split_cams(cap, x, a, wc, mode="official", scales=scales, flip=True) > 0.1
                diff[key].append(float((base != other).float().mean()))
    res["split_cells_changed_vs_feature"] = {k: float(np.mean(v)) for k, v in diff.items()}

    # 2. inference: one scale vs flip vs the official 4 scales x flip (thresholds chosen for the official split)
    chosen = select_lpcam_thresholds(
        fits["official"], lambda p: _score(val_f.maps(p), val_meta)["MaxBoxAccV2"], DEFAULT_THRESHOLD_GRID
    ).prototypes
    infer = {}
    for name, kw in (
        ("1 scale", {}),
        ("1 scale + flip", {"flip": True}),
        ("4 scales + flip (official)", {"flip": True, "scales": OFFICIAL_SCALES}),
    ):
        maps, cost = _method_maps(clf, te_b, "lpcam", prototypes=chosen, **kw)
        infer[name] = {"test": _score(maps, te_meta), "cpu_s_per_image": cost}
    infer["cam (reference)"] = {"test": res["cam_test"], "cpu_s_per_image": cam_cost}
    res["inference"] = infer

    # 3. class-balanced vs the first images in file order (same number of images), official split
    first, cost = _fit(clf, fit_first, split="official")
    search, _ = _select(first, val_f, val_meta)
    per_class_first = np.bincount([labels[i] for i in first_idx], minlength=meta.num_classes).tolist()
    res["balanced_vs_first"] = {
        "balanced": {
            "images_per_class": np.bincount([labels[i] for i in bal_idx], minlength=meta.num_classes).tolist(),
            "test": variants["official"]["chosen"]["test"],
        },
        "first_in_file_order": {
            "images_per_class": per_class_first,
            "fit_cpu_s": cost,
            "thresholds": {"fg_threshold": search.best["fg_threshold"], "bg_band": list(search.best["bg_band"])},
            "test": _score(te_f.maps(search.prototypes), te_meta),
        },
    }

    # 4. the memory cap (vectors kept per class and set), official split, thresholds re-chosen
    caps = {}
    for cap_rows in (None, 2000, 500, 100):
        clusters, cost = _fit(clf, fit_bal, split="official", max_vectors_per_class=cap_rows, memory_limit_mb=None)
        search, _ = _select(clusters, val_f, val_meta)
        seen = clusters.header["vectors_seen_kept"]
        caps[str(cap_rows)] = {
            "fit_cpu_s": cost,
            "vectors_seen_kept": seen,
            "thresholds": {"fg_threshold": search.best["fg_threshold"], "bg_band": list(search.best["bg_band"])},
            "test": _score(te_f.maps(search.prototypes), te_meta),
        }
    res["memory_cap"] = caps
    res["wall_s"] = time.perf_counter() - t_start
    res["cpu_s"] = time.process_time() - c_start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(_report(res), encoding="utf-8")
    print(_report(res))
    return 0


def _fmt(m: dict[str, float]) -> str:
    return " / ".join(f"{m[k]:.1f}" for k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP") if k in m)


def _report(r: dict[str, Any]) -> str:
    lines = [
        "# LPCAM on a WSOL classifier",
        "",
        (
            f"`{r['command']}` — classifier `{r['arch']}` at {r['input_size']} px, {r['num_classes']} classes; "
            f"splits {r['splits']}; fitted on {r['fit_images_per_class']} training images per class; "
            f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU ({r['threads']} threads, shared machine)."
        ),
        "",
        (
            "Test split, percent: MaxBoxAcc / MaxBoxAccV2 / PxAP (224 frame, threshold step 0.01). Thresholds chosen on "
            "the validation split's MaxBoxAccV2 over `DEFAULT_THRESHOLD_GRID`; VOC = (0.9, (0.05, 0.9))."
        ),
        "",
        f"CAM (reference): {_fmt(r['cam_test'])}",
        "",
        "## Split CAM and thresholds",
        "",
        (
            "| split | fit CPU s / image | VOC thresholds: classes w/o context, test | chosen thresholds | "
            "chosen: FG / context prototypes per class | chosen: test |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in r["split"].items():
        voc, ch = v["voc"], v["chosen"]
        nctx = sum(1 for c in voc["counts"].values() if c[1] == 0)
        lines.append(
            f"| {name} | {v['fit_cpu_s_per_image']:.3f} | {nctx} of {len(voc['counts'])}: {_fmt(voc['test'])} | "
            f"{ch['thresholds']['fg_threshold']}, {tuple(ch['thresholds']['bg_band'])} | "
            f"{', '.join(f'{a}/{b}' for a, b in ch['counts'].values())} | {_fmt(ch['test'])} |"
        )
    lines += [
        "",
        "Per class FG / context prototypes with the VOC thresholds (official split): "
        + ", ".join(f"{a}/{b}" for a, b in r["split"]["official"]["voc"]["counts"].values()),
        "",
    ]
    lines += [
        "Cells whose FG/BG label (at 0.1) differs from the feature-resolution split: "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in r["split_cells_changed_vs_feature"].items()),
        "",
    ]
    lines += [
        "## Inference (official split, chosen thresholds)",
        "",
        "| maps | test | CPU s / image |",
        "| --- | --- | --- |",
    ]
    for name, v in r["inference"].items():
        lines.append(f"| {name} | {_fmt(v['test'])} | {v['cpu_s_per_image']:.4f} |")
    b = r["balanced_vs_first"]
    lines += [
        "",
        "## Class-balanced fitting vs the first images in file order (same count)",
        "",
        f"- balanced {b['balanced']['images_per_class']} images per class: {_fmt(b['balanced']['test'])}",
        (
            f"- first in file order {b['first_in_file_order']['images_per_class']}: "
            f"{_fmt(b['first_in_file_order']['test'])}"
        ),
        "",
        "## Memory cap while collecting (rows kept per class and set)",
        "",
        "| cap | vectors seen (fg+bg, all classes) | kept | test |",
        "| --- | --- | --- | --- |",
    ]
    for cap, v in r["memory_cap"].items():
        seen = sum(a + b for a, b, _, _ in v["vectors_seen_kept"].values())
        kept = sum(c + d for _, _, c, d in v["vectors_seen_kept"].values())
        lines.append(f"| {cap} | {seen} | {kept} | {_fmt(v['test'])} |")
    lines.append("")
    lines += [
        "## Validation grid (official split)",
        "",
        ("| fg_threshold | bg_band | val MaxBoxAccV2 | classes w/o context | context prototypes |"),
        "| --- | --- | --- | --- | --- |",
    ]
    for row in r["split"]["official"]["grid"]:
        lines.append(
            f"| {row['fg_threshold']} | {tuple(row['bg_band'])} | {row['score']:.2f} | "
            f"{row['classes_without_context']} | {row['context_prototypes']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
