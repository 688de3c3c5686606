"""Cold start and size of the lean install vs the full one (issue 9 goals), measured side by side.

Cold start = a fresh process: interpreter start, ``import fcam_deploy.runtime``, ``Localizer.load(model.onnx)`` and
the first ``predict`` on a 500x375 photo, timed from the parent (spawn to exit) and from inside (the three steps),
with the child's own peak RSS (``VmHWM`` read by the child: a fork's ``ru_maxrss`` would count the parent). Three installs, each run ``--repeats`` times, interleaved:

* ``lean``: the wheel built from this checkout, installed with no extras into a fresh venv (numpy, pillow,
  onnxruntime + the compiled core);
* ``full``: the development venv (``.venv``, every extra) on this checkout;
* ``before`` (optional, ``--before REV``): the development venv on a ``git worktree`` of an older commit (the
  runtime before the lean rewrite imported torch to resize maps).

Usage (from the repository root, after ``make venv``)::

    .venv/bin/python benchmarks/lean/run.py --checkpoint DEMO/model --out benchmarks/results/lean [--before 8bb1b26]

Writes ``results.json`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import sys, time, json
t0 = time.perf_counter()
import fcam_deploy.runtime
from fcam_deploy.runtime import Localizer
from PIL import Image
t1 = time.perf_counter()
loc = Localizer.load(sys.argv[1])
t2 = time.perf_counter()
pred = loc.predict(Image.open(sys.argv[2]).convert("RGB"))
t3 = time.perf_counter()
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "peak_rss_mb": hwm / 1024,
                  "torch_imported": "torch" in sys.modules, "class_index": pred.class_index,
                  "boxes": [list(b) for b in pred.boxes]}))
"""


def _du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def _build_lean(work: Path) -> Path:
    wheel_dir = work / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = wheel_dir.glob("fcam_deploy-*.whl")
    env_dir = work / "lean-venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(REPO / "constraints.txt"),
            str(wheel),
        ],
        check=True,
    )
    return env_dir


def _cold_start(python: Path, model: Path, photo: Path, pythonpath: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(python), "-c", PROBE, str(model), str(photo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    _, status = os.waitpid(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{python} probe failed: {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="an F-CAM checkpoint (e.g. DEMO/model)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--before", default=None, help="older commit to measure too (a temporary git worktree)")
    args = ap.parse_args(argv)
    from PIL import Image

    from fcam_deploy.export.onnx_export import export_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fcam-lean-bench-") as tmp:
        work = Path(tmp)
        model = work / "model.onnx"
        export_checkpoint(args.checkpoint, model, postprocess="none")
        photo = work / "photo.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(photo)
        lean = _build_lean(work)
        installs: dict[str, tuple[Path, str | None]] = {
            "lean": (lean / "bin" / "python", None),
            "full": (Path(sys.executable), str(REPO)),
        }
        before_tree = None
        if args.before:
            before_tree = work / "before"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(before_tree), args.before], check=True
            )
            installs["before"] = (Path(sys.executable), str(before_tree))
        try:
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in installs}
            for k, (py, pp) in installs.items():  # one untimed run each: file-system caches warm for all
                _cold_start(py, model, photo, pp)
            for _ in range(args.repeats):
                for k, (py, pp) in installs.items():
                    runs[k].append(_cold_start(py, model, photo, pp))
        finally:
            if before_tree is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)], check=False)
        sizes = {"lean": _du_mb(lean), "full": _du_mb(Path(sys.prefix))}
        lean_dists = json.loads(
            subprocess.run(
                [str(lean / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    summary = {}
    for k, rs in runs.items():
        summary[k] = {
            f: statistics.median(r[f] for r in rs)
            for f in ("wall_s", "import_s", "load_s", "first_predict_s", "peak_rss_mb")
        }
        summary[k]["torch_imported"] = any(r["torch_imported"] for r in rs)
    same = all(
        r["boxes"] == runs["full"][0]["boxes"] and r["class_index"] == runs["full"][0]["class_index"]
        for k in ("lean", "full")
        for r in runs[k]
    )
    doc = {
        "date": _dt.date.today().isoformat(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "command": "python benchmarks/lean/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "repeats": args.repeats,
        "venv_mb": sizes,
        "lean_distributions": sorted(f"{d['name']}=={d['version']}" for d in lean_dists),
        "cold_start": summary,
        "same_prediction_everywhere": same,
        "runs": runs,
    }
    if "before" in summary:
        doc["speedup_vs_before"] = summary["before"]["wall_s"] / summary["lean"]["wall_s"]
    doc["speedup_vs_full"] = summary["full"]["wall_s"] / summary["lean"]["wall_s"]
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Lean install: size and cold start",
        "",
        (
            f"Command: `{doc['command']}` ({doc['date']}, "
            f"{doc['machine']['cpus']} CPUs, Python {doc['machine']['python']}); medians of {args.repeats} fresh "
            "processes per install, interleaved."
        ),
        "",
        f"Venv size: lean **{sizes['lean']:.0f} MB**, full {sizes['full']:.0f} MB.",
        "",
        "| install | cold start (spawn to exit) | import | load | first predict | peak RSS | torch imported |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in summary.items():
        lines.append(
            f"| {k} | **{v['wall_s']:.2f} s** | {v['import_s']:.2f} s | {v['load_s']:.2f} s | "
            f"{v['first_predict_s']:.3f} s | {v['peak_rss_mb']:.0f} MB | {v['torch_imported']} |"
        )
    lines += [
        "",
        (
            f"Same class and boxes from the lean and the full install: {same} (the older runtime computed boxes "
            "at the model size, so its boxes differ by design)."
        ),
        f"Lean vs full (same code, different venv): {doc['speedup_vs_full']:.2f}x.",
    ]
    if "speedup_vs_before" in doc:
        lines.append(
            f"Lean vs before (commit {args.before}, full venv; its runtime imported torch): "
            f"**{doc['speedup_vs_before']:.1f}x** (goal >= 5x)."
        )
    lines += ["", "Lean venv: " + ", ".join(doc["lean_distributions"]), ""]
    (args.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    shutil.rmtree(args.out / "work", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
