"""MaxBoxAccV2 evaluator speed: fast engine (component-tree sweep) vs the reference (one OpenCV findContours per
threshold per image), side by side in one run on the same maps, with identical numbers checked.

    .venv/bin/python benchmarks/evaluator/run.py --maps 200 --step 0.001 --out benchmarks/evaluator/results.json

Maps: 224 x 224, CAM-like (sums of 1-4 anisotropic Gaussian blobs, some negative lobes, light noise, min-max
normalised; a quarter of them bicubic-upsampled from a 7x7 / 14x14 / 28x28 low-res map like a real CAM); GT: the
map's extent above a random level, jittered, plus sometimes a second unrelated box. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fcam_deploy.metrics import BoxEvaluator, cam_thresholds, scoremap_to_uint8
from fcam_deploy.metrics.fast import best_ious_fast
from fcam_deploy.metrics.reference import best_ious_reference


def make_maps(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import cv2

    rng = np.random.default_rng(seed)
    size = 224
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    maps, gts = [], []
    for k in range(n):
        if k % 4 == 3:  # low-res CAM upsampled with OpenCV bicubic, as wsolevaluation does
            low = int(rng.choice([7, 14, 28]))
            cam = rng.normal(0, 1, (low, low))
            cam = cv2.GaussianBlur(cam, (0, 0), low / 7)
            m = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
        else:
            m = np.zeros((size, size))
            for _ in range(int(rng.integers(1, 5))):
                cy, cx = rng.uniform(0, size, 2)
                sy, sx = rng.uniform(size / 30, size / 4, 2)
                amp = rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.8 else -0.4)
                m += amp * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
            m += rng.normal(0, 0.005, m.shape)
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m)
        # GT: the extent of the map above a random level, jittered (the CAM roughly finds the object), and
        # sometimes a second, unrelated object box
        ys, xs = np.nonzero(m > rng.uniform(0.2, 0.6))
        j = rng.integers(-12, 13, 4)
        x0, y0 = int(np.clip(xs.min() + j[0], 0, size - 1)), int(np.clip(ys.min() + j[1], 0, size - 1))
        x1, y1 = int(np.clip(xs.max() + j[2], x0, size - 1)), int(np.clip(ys.max() + j[3], y0, size - 1))
        boxes = [[x0, y0, x1, y1]]
        if rng.random() < 0.3:
            w, h = rng.integers(20, 120, 2)
            bx, by = rng.integers(0, size - w), rng.integers(0, size - h)
            boxes.append([int(bx), int(by), int(bx + w - 1), int(by + h - 1)])
        gts.append(np.array(boxes))
    return maps, gts


def timed_evaluator(
    engine: str, maps: list[np.ndarray], gts: list[np.ndarray], step: float, v1: bool
) -> tuple[float, dict[str, Any]]:
    ev = BoxEvaluator(cam_curve_interval=step, engine=engine, v1=v1, v2=True)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for s, g in zip(maps, gts):
        ev.accumulate(s, g)
    return time.perf_counter() - t0, ev.compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=200)
    ap.add_argument("--step", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--v1-maps", type=int, default=50, help="maps for the secondary v1+V2 measurement (0: skip)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    args = ap.parse_args()

    maps, gts = make_maps(args.maps, args.seed)
    thresholds = cam_thresholds(args.step)

    t0 = time.perf_counter()
    best_ious_fast(np.zeros((4, 4), np.uint8), np.array([[0, 0, 1, 1]]), thresholds)  # numba compile / cache load
    warmup = time.perf_counter() - t0

    # 1. per-map best-IoU curves (the part that differs between engines), identical numbers required
    t_ref = t_fast = 0.0
    max_abs = 0.0
    for s, g in zip(maps, gts):
        u8 = scoremap_to_uint8(s)
        t0 = time.perf_counter()
        r = best_ious_reference(u8, g, thresholds, multi_contour=True)
        t_ref += time.perf_counter() - t0
        t0 = time.perf_counter()
        _, f = best_ious_fast(u8, g, thresholds, v1=False, v2=True)
        t_fast += time.perf_counter() - t0
        assert f is not None
        if not np.array_equal(r, f):
            raise SystemExit(f"MISMATCH: fast and reference best-IoU curves differ (max {np.abs(r - f).max()})")
        max_abs = max(max_abs, float(np.abs(r - f).max()))

    # 2. the whole MaxBoxAccV2 evaluator (validation, uint8 cast, accumulation), both engines
    te_ref, res_ref = timed_evaluator("reference", maps, gts, args.step, v1=False)
    te_fast, res_fast = timed_evaluator("fast", maps, gts, args.step, v1=False)
    if res_ref != res_fast:
        raise SystemExit(f"MISMATCH: evaluator results differ\n{res_ref}\n{res_fast}")

    out: dict[str, Any] = {
        "command": f"python benchmarks/evaluator/run.py --maps {args.maps} --step {args.step} --seed {args.seed} "
        f"--v1-maps {args.v1_maps}",
        "maps": args.maps,
        "thresholds": len(thresholds),
        "metric": "MaxBoxAccV2 (all contours, IoU 30/50/70)",
        "identical_numbers": True,
        "max_abs_diff_best_iou": max_abs,
        "best_iou_curves": {
            "reference_s": round(t_ref, 4),
            "fast_s": round(t_fast, 4),
            "reference_ms_per_map": round(1e3 * t_ref / args.maps, 3),
            "fast_ms_per_map": round(1e3 * t_fast / args.maps, 3),
            "speedup": round(t_ref / t_fast, 2),
        },
        "evaluator": {
            "reference_s": round(te_ref, 4),
            "fast_s": round(te_fast, 4),
            "speedup": round(te_ref / te_fast, 2),
            "MaxBoxAccV2": res_fast["MaxBoxAccV2"],
            "per_iou": res_fast["per_iou"],
        },
        "fast_engine_warmup_s": round(warmup, 3),
    }
    if args.v1_maps > 0:
        sub = slice(0, min(args.v1_maps, args.maps))
        tb_ref, rb_ref = timed_evaluator("reference", maps[sub], gts[sub], args.step, v1=True)
        tb_fast, rb_fast = timed_evaluator("fast", maps[sub], gts[sub], args.step, v1=True)
        if rb_ref != rb_fast:
            raise SystemExit(f"MISMATCH: v1+V2 evaluator results differ\n{rb_ref}\n{rb_fast}")
        out["evaluator_v1_and_v2"] = {
            "maps": len(maps[sub]),
            "reference_s": round(tb_ref, 4),
            "fast_s": round(tb_fast, 4),
            "speedup": round(tb_ref / tb_fast, 2),
            "MaxBoxAcc": rb_fast["MaxBoxAcc"],
        }
    out["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    import cv2
    import numba

    out["versions"] = {"numpy": np.__version__, "opencv": cv2.__version__, "numba": numba.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
