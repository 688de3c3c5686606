"""GPU verification of fcam::cam_postprocess (run on a machine with an NVIDIA GPU, nvcc and a CUDA torch).

    python kernels/gpu/verify_cuda.py [--out benchmarks/postprocess/results/gpu.json] [--skip-build]

1. Builds the torch extension with its CUDA kernels in place (kernels/torch/build_ext.py, FCAM_TORCH_CUDA=1,
   only the local GPU's architecture, so the build takes about a minute), unless --skip-build.
2. Correctness: the CUDA op vs the C++ CPU op and the NumPy reference on random inputs (many shapes, all option
   combinations, constant and NaN maps): requires 0 mask / box / count mismatches and |full| diff <= 1e-5.
3. Speed (CUDA events, median of 50 runs after warm-up), N=64, 28x28 -> 224x224 and 224x224 -> 375x500:
   - the op (fused upsample + normalise + threshold, GPU connected components, boxes),
   - the same map steps in plain torch ops (amin/amax normalise, F.interpolate, amax, compare),
   - device-to-device copy bandwidth (torch copy_ of 1 GiB), and the op's effective bandwidth
     (bytes read + written by the unavoidable traffic: maps in, full + mask out) as % of it (goal >= 70%).
Prints one table; exits 1 on any mismatch. Budget: < 5 minutes including the build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_extension() -> float:
    import torch

    major, minor = torch.cuda.get_device_capability()
    env = dict(os.environ, FCAM_TORCH_CUDA="1", FCAM_CUDA_ARCHS=f"{major}{minor}", MAX_JOBS=str(os.cpu_count() or 4))
    if not env.get("CUDA_HOME"):
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            raise SystemExit("verify_cuda: no nvcc on PATH and CUDA_HOME unset")
        env["CUDA_HOME"] = str(Path(nvcc).resolve().parents[1])
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "kernels" / "torch" / "build_ext.py")], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def check_correctness(seed: int = 0) -> dict[str, float | int]:
    import numpy as np
    import torch

    from fcam_deploy.ops import cam_postprocess_reference

    op = torch.ops.fcam.cam_postprocess
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1, 1, 1), (3, 7, 9, 3, 2), (5, 28, 28, 224, 224), (4, 14, 14, 224, 224), (2, 224, 224, 375, 500),
              (3, 5, 3, 17, 31), (2, 1, 13, 13, 1), (8, 7, 7, 64, 48)]
    cases = mism = ref_cases = 0
    max_diff = 0.0
    for it in range(40):
        n, h, w, oh, ow = shapes[it % len(shapes)]
        m = rng.standard_normal((n, h, w)).astype(np.float32)
        if it % 5 == 1:
            m[0] = 3.0
        if it % 7 == 2:
            m[-1, 0, 0] = np.nan
        for q in (False, True):
            for p in (False, True):
                for norm in (True, False):
                    tau = float(rng.choice([0.0, 1.0, rng.random(), np.arange(0, 1, 0.01)[rng.integers(100)]]))
                    k = int(rng.integers(1, 6))
                    cpu = op(torch.from_numpy(m), oh, ow, tau, q, p, k, norm)
                    gpu = [t.cpu() for t in op(torch.from_numpy(m).cuda(), oh, ow, tau, q, p, k, norm)]
                    max_diff = max(max_diff, float((cpu[0] - gpu[0]).abs().max()) if cpu[0].numel() else 0.0)
                    bad = not (torch.equal(cpu[1], gpu[1]) and torch.equal(cpu[2], gpu[2]) and torch.equal(cpu[3], gpu[3]))
                    if n * oh * ow <= 200_000:
                        ref = cam_postprocess_reference(m, oh, ow, tau, q, p, k, norm)
                        bad |= not (np.array_equal(ref.mask, gpu[1].numpy()) and np.array_equal(ref.boxes, gpu[2].numpy())
                                    and np.array_equal(ref.count, gpu[3].numpy()))
                        max_diff = max(max_diff, float(np.abs(ref.full - gpu[0].numpy()).max()))
                        ref_cases += 1
                    cases += 1
                    mism += int(bad)
    return {"cases": cases, "cases_vs_numpy_reference": ref_cases, "mismatched_cases": mism, "max_full_diff": max_diff}


def cuda_time(fn, iters: int = 50) -> float:  # type: ignore[no-untyped-def]
    import torch

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def copy_bandwidth() -> float:
    import torch

    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src), iters=20)
    return 2 * src.numel() / t  # bytes read + written per second


def speed(copy_bw: float) -> list[dict[str, float | str]]:
    import torch
    import torch.nn.functional as F

    op = torch.ops.fcam.cam_postprocess
    rows = []
    for name, h, w, oh, ow in [("28x28 -> 224x224", 28, 28, 224, 224), ("224x224 -> 375x500", 224, 224, 375, 500)]:
        n = 64
        maps = torch.randn(n, h, w, device="cuda")

        def plain() -> tuple[torch.Tensor, torch.Tensor]:
            lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
            norm = torch.where(hi > lo, (maps - lo) / (hi - lo), torch.zeros_like(maps))
            full = F.interpolate(norm[:, None], (oh, ow), mode="bilinear", align_corners=False)[:, 0]
            return full, (full > 0.5 * full.amax((1, 2), keepdim=True)).to(torch.uint8)

        t_op = cuda_time(lambda: op(maps, oh, ow, 0.5, False, False, 4, True))
        t_proto = cuda_time(lambda: op(maps, oh, ow, 0.5, True, True, 4, True))
        t_plain = cuda_time(plain)
        moved = n * h * w * 4 + n * oh * ow * (4 + 1)
        rows.append({
            "case": name, "op_ms": t_op * 1e3, "op_protocol_ms": t_proto * 1e3, "plain_torch_maps_only_ms": t_plain * 1e3,
            "op_effective_GBps": moved / t_op / 1e9, "copy_GBps": copy_bw / 1e9,
            "pct_of_copy_bw": 100 * (moved / t_op) / copy_bw,
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("verify_cuda: no CUDA device visible to torch")
    build_s = 0.0 if args.skip_build else build_extension()
    from fcam_deploy.ops import native_status

    st = native_status()
    if not (st.available and st.cuda):
        raise SystemExit(f"verify_cuda: the extension has no CUDA kernel ({st.reason})")
    corr = check_correctness()
    bw = copy_bandwidth()
    rows = speed(bw)
    dev = torch.cuda.get_device_name()
    print(f"\nfcam::cam_postprocess on {dev} (torch {torch.__version__}, build {build_s:.0f} s)")
    print(f"correctness: {corr['cases']} cases ({corr['cases_vs_numpy_reference']} also vs NumPy), "
          f"{corr['mismatched_cases']} with mask/box/count mismatches, max |full diff| {corr['max_full_diff']:.2e}")
    hdr = f"{'case':<22}{'op ms':>9}{'op+protocol ms':>16}{'plain torch (maps only) ms':>28}{'op GB/s':>10}{'copy GB/s':>11}{'% of copy':>11}"
    print(hdr)
    for r in rows:
        print(f"{r['case']:<22}{r['op_ms']:>9.3f}{r['op_protocol_ms']:>16.3f}{r['plain_torch_maps_only_ms']:>28.3f}"
              f"{r['op_effective_GBps']:>10.1f}{r['copy_GBps']:>11.1f}{r['pct_of_copy_bw']:>10.1f}%")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": dev, "torch": torch.__version__, "build_s": build_s,
                                        "correctness": corr, "speed": rows}, indent=2) + "\n")
    ok = corr["mismatched_cases"] == 0 and corr["max_full_diff"] <= 1e-5
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
