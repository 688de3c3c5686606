"""Mutation check: inject known one-line bugs into a copy of the package and expect the tests meant to catch them
to fail.

Each mutation replaces one exact source line fragment (the script stops with an error when the fragment is no
longer found, so a refactor cannot silently turn a mutation into a no-op), copies ``fcam_deploy/`` and ``tests/``
into a temporary folder (``kernels/`` is linked, so native builds are used as in the real tree), runs the targeted
test files there with pytest and requires a non-zero exit. The unmutated copy runs first and must pass (otherwise
a failure would say nothing about the mutation).

Run from the repository root (3.5 minutes on 2 quiet cores, 8 under load; not part of CI for that reason)::

    python tests/mutation/run_mutations.py            # all mutations
    python tests/mutation/run_mutations.py --list     # what they are
    python tests/mutation/run_mutations.py --only parity-counts-tie-pixels --no-baseline

Exit status 0 when every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "localizer-keeps-no-boxes",
        "fcam_deploy/runtime/localizer.py",
        "for row in res.boxes[i, :n]",
        "for row in res.boxes[i, :0]",
        ("tests/runtime/test_backends_cli.py",),
        "the Localizer drops every box (both backends alike)",
    ),
    Mutation(
        "parity-counts-tie-pixels",
        "fcam_deploy/export/parity.py",
        'out["mask_pixels_differ_non_tie"] = int((differ & ~tie).sum())',
        'out["mask_pixels_differ_non_tie"] = int((differ & tie).sum())',
        ("tests/export/test_cli_parity.py",),
        "parity counts the tie pixels instead of the real mask differences",
    ),
    Mutation(
        "eval-explains-predicted-class",
        "fcam_deploy/metrics/model_eval.py",
        'cls = labels.to(device) if classes == "gt" else None',
        "cls = None",
        ("tests/cli/test_eval.py",),
        "fcam eval explains the predicted class instead of the ground truth (not GT-known)",
    ),
    Mutation(
        "score-ignores-manifest-digests",
        "fcam_deploy/cli/score.py",
        "load_map(args.maps, image_id, sha256=digests.get(image_id))",
        "load_map(args.maps, image_id)",
        ("tests/reliability/test_bad_inputs.py::test_bad_input[score-map-of-another-run]",),
        "fcam score accepts a map of another run in a folder whose manifest says complete",
    ),
    Mutation(
        "predict-overwrites-its-input",
        "fcam_deploy/cli/predict.py",
        "if name.casefold() not in taken and free(name):",
        "if True:",
        ("tests/reliability/test_bad_inputs.py::test_bad_input[predict-out-folder-holds-the-input]",),
        "fcam predict names outputs by stem alone (overwrites an input photo, collides on equal stems)",
    ),
)


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(REPO / "fcam_deploy", dst / "fcam_deploy", ignore=ignore, symlinks=True)
    shutil.copytree(REPO / "tests", dst / "tests", ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "setup.py"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dst / name)
    for name in ("kernels", "export", "benchmarks"):  # native builds, profiles, C++ library: used read-only
        if (REPO / name).exists():
            (dst / name).symlink_to(REPO / name)


def _apply(root: Path, m: Mutation) -> None:
    path = root / m.file
    text = path.read_text(encoding="utf-8")
    hits = text.count(m.old)
    if hits != 1:
        raise SystemExit(f"mutation {m.name}: expected the fragment once in {m.file}, found it {hits} times: {m.old!r}")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")


def _pytest(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - t0, "timed out"
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, time.perf_counter() - t0, tail[-1] if tail else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run only this mutation (repeatable)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name}: {m.file}: {m.old!r} -> {m.new!r}\n    {m.why}; caught by {', '.join(m.tests)}")
        return 0 if args.list else 1
    failed = False
    with tempfile.TemporaryDirectory(prefix="fcam-mutation-") as tmp:
        if not args.no_baseline:
            base = Path(tmp) / "baseline"
            _copy_tree(base)
            tests = tuple(sorted({t for m in chosen for t in m.tests}))
            rc, secs, last = _pytest(base, tests, args.timeout)
            print(f"baseline (unmutated): rc={rc} in {secs:.0f} s: {last}", flush=True)
            if rc != 0:
                print("the unmutated tests fail: fix them before judging the mutations", file=sys.stderr)
                return 1
        for m in chosen:
            root = Path(tmp) / m.name
            _copy_tree(root)
            _apply(root, m)
            rc, secs, last = _pytest(root, m.tests, args.timeout)
            caught = rc not in (0, 5, -1)  # 5: no tests collected; -1: timeout
            failed |= not caught
            print(f"{'caught  ' if caught else 'SURVIVED'} {m.name} (rc={rc}, {secs:.0f} s): {last}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
