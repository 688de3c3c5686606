"""`fcam bench`: latency, FLOPs, localization and parity of every method and backend, as a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark methods x backends: latency, FLOPs, localization, parity",
        description="Run a benchmark suite (quick | standard | full, or a suite JSON path) and write "
        "DIR/results.json, DIR/report.md and PNG plots.",
    )
    p.add_argument("--suite", default="quick", help="quick | standard | full, or a suite JSON file")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--checkpoint", type=Path, help="a trained checkpoint to benchmark (localization needs one)")
    p.add_argument("--data", type=Path, help="dataset folder (default: a small synthetic set is generated)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_run, needs_extra="train")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.bench.report import write_report
    from fcam_deploy.bench.runner import run_suite
    from fcam_deploy.bench.suite import load_suite

    cfg = load_suite(args.suite)
    doc = run_suite(cfg, args.out, checkpoint=args.checkpoint, data_dir=args.data)
    command = "fcam bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None
    for path in write_report(doc, args.out, command=command, plots=not args.no_plots):
        print(path)
    return 0
