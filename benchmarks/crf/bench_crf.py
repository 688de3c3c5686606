"""The F-CAM dense CRF on the CPU: the native permutohedral lattice (the official filter) vs the exact Gaussian,
and what it costs per image and per training batch, side by side with the pooled exact kernel.

Accuracy: synthetic images of the built-in generator with soft two-channel maps (sigmoid of the blurred object
mask plus noise); the lattice output vs the exact dense Gaussian ``sum_q exp(-|f_p - f_q|^2 / 2) v_q`` (float64,
chunked): least-squares scale and cosine; and the official gradient ``-2 W S`` vs the true one ``-(W + W^T) S``.

Cost: ``dense_crf_loss`` forward + backward (the official gradient needs no second filter) on batches of soft maps
at 224 px (the official CUB setting, batch 32) and 96 px (the demo), lattice vs the pooled kernel at the grids the
configs used before (56 at 224, 12 at 96); one image through ``lattice_filter`` at 224 with one thread. Median of
``--repeats`` after a warm-up; wall time and process CPU time.

    .venv/bin/python benchmarks/crf/bench_crf.py --out benchmarks/crf/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def synthetic_batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) raw RGB float32 in [0, 255] from the built-in generator and soft (N, 2, S, S) maps."""
    from fcam_deploy.data.synth import SynthConfig, render_sample

    cfg = SynthConfig(size=size, num_classes=4)
    rng = np.random.default_rng(seed)
    imgs, maps = [], []
    for i in range(n):
        s = render_sample(cfg, i % 4, np.random.default_rng(seed * 1000 + i))
        obj = torch.from_numpy(np.any(np.stack(s.instance_masks), 0).astype(np.float32))[None, None]
        k = max(3, size // 16) | 1
        blur = F.avg_pool2d(obj, k, 1, k // 2, count_include_pad=False)[0, 0]
        fg = torch.sigmoid(6 * (blur - 0.5) + torch.from_numpy(rng.normal(0, 0.7, (size, size)).astype(np.float32)))
        imgs.append(torch.from_numpy(s.image).permute(2, 0, 1).float())
        maps.append(torch.stack([1 - fg, fg]))
    return torch.stack(imgs), torch.stack(maps)


def exact_filter(img: torch.Tensor, val: torch.Tensor, s_rgb: float, s_xy: float, chunk: int = 2048) -> torch.Tensor:
    """Exact dense Gaussian filter of one image (3, H, W) / values (C, H, W), float64, row-chunked."""
    _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    f = torch.cat([torch.stack([xs, ys]).reshape(2, -1) / s_xy, img.double().reshape(3, -1) / s_rgb]).T
    v = val.double().reshape(val.shape[0], -1).T
    sq = (f * f).sum(1)
    out = torch.empty_like(v)
    for r in range(0, f.shape[0], chunk):
        fr = f[r : r + chunk]
        d2 = (sq[r : r + chunk, None] + sq[None, :] - 2 * fr @ f.T).clamp_min(0)
        out[r : r + chunk] = torch.exp(-0.5 * d2) @ v
    return out.T.reshape(val.shape)


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {
        "wall_ms": 1e3 * statistics.median(wall),
        "cpu_ms": 1e3 * statistics.median(cpu),
        "wall_samples_ms": [round(1e3 * x, 2) for x in wall],
    }


def accuracy() -> list[dict[str, Any]]:
    from fcam_deploy.train.crf import lattice_filter

    rows = []
    for size, n in ((48, 4), (64, 4), (96, 3), (224, 1)):
        img, maps = synthetic_batch(n, size, seed=size)
        for s_rgb, s_xy, tag in (
            (15.0, 100.0 * size / 224, "official, sigma_xy scaled"),
            (15.0, 100.0, "official"),
            (8.0, 6.0, "finer"),
        ):
            if size == 224 and tag != "official":
                continue
            lat = lattice_filter(img, maps, s_rgb, s_xy).double()
            ex = torch.stack([exact_filter(img[i], maps[i], s_rgb, s_xy) for i in range(n)])
            scale = float((lat * ex).sum() / (ex * ex).sum())
            cos = float((lat * ex).sum() / lat.norm() / ex.norm())
            v = maps.clone().requires_grad_(True)
            (lattice_filter(img, v, s_rgb, s_xy) * maps).sum().backward()
            official, true = 2 * lat, lat + v.grad.double()  # -2 W S vs -(W + W^T) S, up to the common -lam/N
            g_cos = float((official * true).sum() / official.norm() / true.norm())
            g_rel = float((official - true).norm() / true.norm())
            rows.append(
                {
                    "size": size,
                    "images": n,
                    "sigma_rgb": s_rgb,
                    "sigma_xy": round(s_xy, 3),
                    "setting": tag,
                    "scale_vs_exact": round(scale, 4),
                    "cosine_vs_exact": round(cos, 5),
                    "official_grad_vs_true_cosine": round(g_cos, 6),
                    "official_grad_rel_error": round(g_rel, 5),
                }
            )
            print(rows[-1], flush=True)
    return rows


def cost(repeats: int) -> list[dict[str, Any]]:
    from fcam_deploy.train.crf import CRFConfig, dense_crf_loss, lattice_filter

    rows = []
    threads = torch.get_num_threads()
    img1, maps1 = synthetic_batch(1, 224, seed=7)
    torch.set_num_threads(1)
    try:
        r = timed(lambda: lattice_filter(img1, maps1, 15.0, 100.0), repeats)
    finally:
        torch.set_num_threads(threads)
    rows.append({"what": "lattice_filter, one 224x224 image, C=2, 1 thread", **r})
    print(rows[-1], flush=True)
    for size, grid in ((224, 56), (96, 12)):
        img, maps = synthetic_batch(32, size, seed=size + 1)
        logits = torch.log(maps.clamp_min(1e-4)).requires_grad_(True)

        def step(cfg: CRFConfig, logits: torch.Tensor = logits, img: torch.Tensor = img) -> Callable[[], None]:
            def fn() -> None:
                logits.grad = None
                dense_crf_loss(F.softmax(logits, 1), img, cfg).backward()

            return fn

        for label, cfg in (
            (f"lattice (official), full {size}x{size}", CRFConfig()),
            (f"pooled exact kernel, grid {grid}", CRFConfig(kernel="pooled", grid=grid)),
        ):
            r = timed(step(cfg), repeats)
            rows.append(
                {
                    "what": f"CRF loss fwd+bwd, batch 32 x 2 x {size}x{size}: {label}",
                    "threads": threads,
                    **r,
                    "per_image_wall_ms": round(r["wall_ms"] / 32, 3),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    acc = accuracy()
    cst = cost(args.repeats)
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    doc = {
        "command": "python benchmarks/crf/bench_crf.py --out benchmarks/crf/results",
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "loadavg_at_end": [round(x, 2) for x in load],
        },
        "accuracy": acc,
        "cost": cst,
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    head = (
        f"Command: `{doc['command']}` ({doc['wall_time_s']} s). Machine: {doc['environment']['cpus']} "
        f"x86-64 cores, torch {torch.__version__}, {torch.get_num_threads()} threads, load average at the end "
        f"{doc['environment']['loadavg_at_end']} (shared machine: other jobs ran at the same time)."
    )
    cols = (
        "| size | images | sigma_rgb | sigma_xy | scale lattice/exact | cosine | official grad vs true: cosine "
        "| rel. error |"
    )
    lines = [
        "# Dense CRF: lattice vs exact Gaussian, cost per image and batch",
        "",
        head,
        "",
        "## Lattice vs the exact Gaussian (synthetic images, soft 2-channel maps)",
        "",
        cols,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in acc:
        lines.append(
            f"| {r['size']} | {r['images']} | {r['sigma_rgb']} | {r['sigma_xy']} | {r['scale_vs_exact']} | "
            f"{r['cosine_vs_exact']} | {r['official_grad_vs_true_cosine']} | {r['official_grad_rel_error']} |"
        )
    lines += [
        "",
        "## Cost (median of the timed repeats after a warm-up)",
        "",
        "| what | wall ms | process CPU ms | wall ms / image |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in cst:
        lines.append(f"| {r['what']} | {r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | {r.get('per_image_wall_ms', '')} |")
    lines.append("")
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
