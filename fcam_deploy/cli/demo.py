"""`fcam demo --out DIR [--quick]`: the built-in end-to-end job, CPU only, no network.

Synthesises the WSOL set, trains the CAM classifier (stage 1) and the F-CAM decoder (stage 2), evaluates CAM vs
F-CAM on the test split and writes DIR/report.md, DIR/results.json, DIR/model/ (F-CAM checkpoint usable by every
other fcam command) and DIR/overlays.png. Default <= 10 min and --quick <= 2 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise data, train classifier + F-CAM, evaluate CAM vs F-CAM (CPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--quick", action="store_true", help="smoke run of every step (<= 2 min)")
    p.add_argument("--seed", type=int, help="data + training seed (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-bench", action="store_true", help="skip the closing benchmark suite")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.train.demo import run_demo

    res = run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress, bench=not args.no_bench)
    m = res["methods"]
    print(
        json.dumps(
            {
                k: {
                    kk: (round(vv, 2) if isinstance(vv, float) else vv)
                    for kk, vv in v.items()
                    if kk in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP")
                }
                for k, v in m.items()
            },
            indent=2,
        )
    )
    extra = ", bench/" if res.get("benchmark") else ""
    print(f"wrote {args.out}/report.md, results.json, model/, overlays.png{extra} in {res['timings']['total_s']:.0f} s")
    return 0
