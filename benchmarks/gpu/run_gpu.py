"""The benchmark's GPU leg (issue: torch eager vs CUDA graphs, our CUDA post-process vs plain torch ops).

Run on a machine with an NVIDIA GPU and a CUDA build of torch, from the repository root (< 8 min):

    python benchmarks/gpu/run_gpu.py --out benchmarks/results/gpu

1. For F-CAM on each backbone in --archs (random weights; the cost does not depend on them), the exported
   computation (`LocalizationGraph`: uint8 NHWC in -> logits, class, map) at 224, batch 1 and 8: torch eager vs
   the same module captured once in a CUDA graph and replayed (static input buffer). Timings are synchronised
   (`torch.cuda.synchronize` around every call), warm-up first, raw samples kept; the replay's outputs are
   checked equal to eager's.
2. The CUDA post-process op vs plain torch ops and vs copy bandwidth: `kernels/gpu/verify_cuda.py` (it also checks
   the CUDA op against the CPU reference: 0 mask/box mismatches required).

Writes OUT/gpu.json and OUT/gpu.md. Not run yet: no GPU was available to the task that wrote it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cuda_graph_vs_eager(arch: str, batch: int, size: int, warmup: int, iters: int) -> dict[str, object]:
    import torch

    from fcam_deploy.bench.latency import measure_latency
    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.models import FCAM, build_classifier

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = FCAM(build_classifier(arch, 8)).eval().to(dev)
    graph = LocalizationGraph(model, "fcam", "none", (size, size), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.5)
    graph = graph.to(dev).eval()
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=dev)
    sync = torch.cuda.synchronize

    with torch.inference_mode():
        eager_out = graph(x)
        eager = measure_latency(lambda: graph(x), batch=batch, warmup=warmup, iters=iters, sync=sync)

        static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the capture (cuDNN autotuning, allocator)
            for _ in range(3):
                graph(static_x)
        torch.cuda.current_stream().wait_stream(side)
        cg = torch.cuda.CUDAGraph()
        t0 = time.perf_counter()
        with torch.cuda.graph(cg):
            static_out = graph(static_x)
        sync()
        capture_s = time.perf_counter() - t0
        replay = measure_latency(cg.replay, batch=batch, warmup=warmup, iters=iters, sync=sync)
        cg.replay()
        sync()
        diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(eager_out, static_out))
    return {
        "arch": arch, "batch": batch, "size": size,
        "eager": eager.to_dict(), "cuda_graph": replay.to_dict(), "capture_s": capture_s,
        "speedup": eager.p50 / replay.p50, "max_abs_diff_vs_eager": diff,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    ap.add_argument("--archs", nargs="+", default=["resnet50", "vgg16", "inceptionv3", "efficientnet_lite0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--skip-postprocess", action="store_true", help="do not run kernels/gpu/verify_cuda.py")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("run_gpu: no CUDA device visible to torch; this script needs an NVIDIA GPU", file=sys.stderr)
        return 2
    from fcam_deploy.bench.manifest import environment_manifest

    args.out.mkdir(parents=True, exist_ok=True)
    rows = [cuda_graph_vs_eager(a, b, args.size, args.warmup, args.iters) for a in args.archs for b in args.batches]
    doc: dict[str, object] = {"schema_version": 1, "manifest": environment_manifest(), "cuda_graphs": rows}
    ok = all(r["max_abs_diff_vs_eager"] <= 1e-4 for r in rows)  # type: ignore[operator]
    if not args.skip_postprocess:
        pp_json = args.out / "postprocess_gpu.json"
        rc = subprocess.call([sys.executable, str(ROOT / "kernels" / "gpu" / "verify_cuda.py"), "--out", str(pp_json)])
        doc["postprocess"] = json.loads(pp_json.read_text()) if pp_json.exists() else {"error": f"exit code {rc}"}
        ok = ok and rc == 0
    (args.out / "gpu.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# GPU leg of the benchmark", "", f"GPU: {doc['manifest']['gpus']}, torch {torch.__version__}", "",  # type: ignore[index]
             "| arch | batch | eager p50 ms | CUDA graph p50 ms | speed-up | max abs diff |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['batch']} | {r['eager']['p50']:.3f} | {r['cuda_graph']['p50']:.3f} | "  # type: ignore[index]
                     f"{r['speedup']:.2f}x | {r['max_abs_diff_vs_eager']:.2e} |")
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
