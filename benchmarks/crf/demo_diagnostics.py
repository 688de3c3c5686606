"""What F-CAM's seeds and CRF can see on a WSOL set: measured on a trained classifier and its data.

For each image of a split (masks of the instances and of the class-discriminative heads come from the synthetic
generator's ``masks/`` and ``parts/`` folders):

* CAM informativeness: the GT-class CAM (min-max at low resolution, bilinear to the input size, as the seed sampler
  sees it): mean value on head / body (object minus head) / background, the per-image AUC of body vs background
  pixels (0.5 = the CAM cannot tell them apart), the share of the body inside the CAM's bottom 10 % (the official
  background candidates), top-1 and how often the CAM's argmax is on the head;
* seed placement: where the official sampler's fg and bg seed pixels land (head / body / background), 10 draws per
  image;
* CRF view: the share of each pixel's bilateral kernel mass (the lattice filter of the CRF loss, official sigmas,
  sigma_xy scaled to the image side) that lies on head / body / background.

    .venv/bin/python benchmarks/crf/demo_diagnostics.py --classifier RUN/classifier/best --data DATA \\
        --out benchmarks/crf/results/diagnostics_NAME.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _masks(meta: Any, data: Path, image_id: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    obj = None
    for mp in meta.masks[image_id]:
        m = np.array(Image.open(meta.mask_root / mp).convert("L")) > 127
        obj = m if obj is None else obj | m
    stem = image_id.split("/")[-1].rsplit(".", 1)[0]
    head = np.array(Image.open(data / "parts" / split / f"{stem}_head.png").convert("L")) > 127
    return obj, head


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = np.concatenate([pos, neg]).argsort().argsort().astype(np.float64) + 1
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def diagnose(classifier: Path, data: Path, split: str, n: int, draws: int) -> dict[str, Any]:
    from fcam_deploy.data import WSOLDataset, open_dataset
    from fcam_deploy.models.checkpoint import load_checkpoint
    from fcam_deploy.train.crf import lattice_filter
    from fcam_deploy.train.engine import normalize_cam
    from fcam_deploy.train.seeds import SeedConfig, sample_seeds

    model, meta = load_checkpoint(classifier)
    clf = model.classifier if hasattr(model, "classifier") else model
    size = int(meta.input_size[0])
    wm = open_dataset(data, split)
    ds = WSOLDataset(wm, data / "images", train=False, size=size, mean=meta.mean, std=meta.std)
    n = min(n, len(ds))
    cfg = SeedConfig(scale_dilate_with_size=True)
    cam_sum, cam_cnt = np.zeros(3), np.zeros(3)
    seeds = np.zeros((2, 3))
    aucs, bottom, on_head, correct = [], [], [], 0
    mass = np.zeros((3, 3))
    with torch.no_grad():
        for i0 in range(0, n, 50):
            items = [ds[j] for j in range(i0, min(n, i0 + 50))]
            x = torch.stack([it["image"] for it in items])
            y = torch.stack([it["label"] for it in items])
            feats = clf.features(x)
            correct += int((clf.classify(feats[-1]).argmax(1) == y).sum())
            cam = normalize_cam(clf.cam(feats[-1], y))
            up = F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            regions = []
            for b, it in enumerate(items):
                obj, head = _masks(wm, data, it["image_id"], split)
                reg = np.where(head, 0, np.where(obj, 1, 2))
                regions.append(reg)
                c = up[b].numpy()
                for r in range(3):
                    cam_sum[r] += c[reg == r].sum()
                    cam_cnt[r] += (reg == r).sum()
                aucs.append(_auc(c[reg == 1], c[reg == 2]))
                bottom.append(
                    float(np.mean(c[reg == 1] <= np.sort(c.ravel())[int(0.1 * c.size) - 1]))
                    if (reg == 1).any()
                    else float("nan")
                )
                on_head.append(bool(head.ravel()[int(c.argmax())]))
                for d in range(draws):
                    g = torch.Generator().manual_seed(1000 * (i0 + b) + d)
                    s = sample_seeds(up[b : b + 1], [g], cfg)[0].numpy()
                    for lab in (0, 1):
                        for r in range(3):
                            seeds[lab, r] += ((s == lab) & (reg == r)).sum()
            reg_t = torch.from_numpy(np.stack(regions))
            onehot = torch.stack([(reg_t == r).float() for r in range(3)], 1)
            raw = torch.stack([it["raw"] for it in items])
            w = lattice_filter(raw, onehot, 15.0, 100.0 * size / 224)
            share = w / w.sum(1, keepdim=True)
            for r in range(3):
                sel = reg_t == r
                for k in range(3):
                    mass[r, k] += float(share[:, k][sel].sum())
    names = ("head", "body", "background")
    cnt = np.array([cam_cnt[r] for r in range(3)])
    return {
        "classifier": str(classifier),
        "data": str(data),
        "split": split,
        "images": n,
        "input_size": size,
        "top1": 100.0 * correct / n,
        "cam_mean": {names[r]: round(cam_sum[r] / cam_cnt[r], 4) for r in range(3)},
        "cam_auc_body_vs_background": round(float(np.nanmean(aucs)), 4),
        "body_share_in_cam_bottom_10pct": round(float(np.nanmean(bottom)), 4),
        "cam_argmax_on_head": round(float(np.mean(on_head)), 4),
        "fg_seed_pixels": {names[r]: round(seeds[1, r] / seeds[1].sum(), 4) for r in range(3)},
        "bg_seed_pixels": {names[r]: round(seeds[0, r] / seeds[0].sum(), 4) for r in range(3)},
        "crf_kernel_mass": {names[r]: {names[k]: round(mass[r, k] / cnt[r], 4) for k in range(3)} for r in range(3)},
        "area_share": {names[r]: round(cam_cnt[r] / cam_cnt.sum(), 4) for r in range(3)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", type=Path, required=True, help="classifier (or F-CAM) checkpoint folder")
    ap.add_argument("--data", type=Path, required=True, help="synthetic WSOL set (with parts/ head masks)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc = diagnose(args.classifier, args.data, args.split, args.images, args.draws)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
