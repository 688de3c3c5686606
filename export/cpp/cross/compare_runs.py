"""Compare two `fcam_localize --json --batch --save-maps DIR ... > DIR.jsonl` runs (x86-64 and aarch64).

    python compare_runs.py --exact|--close X86_DIR ARM_DIR      (reads X86_DIR.jsonl, ARM_DIR.jsonl and the .npy files)

--exact: every JSON line and every map / mask array identical, bit for bit. --close: the same classes, class names
and sizes; logits, scores and maps within 1e-4 (the fp32 criterion of `fcam parity`); masks equal except at pixels
whose map value lies within 1e-4 of the threshold tau * max(map) on either side; boxes equal wherever the masks are.
Prints what was exactly equal and the largest differences; exit 1 when the mode's condition fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TOL = 1e-4  # the fp32 parity criterion of `fcam parity` (export/README.md): map and logits max |Δ| <= 1e-4


def main(mode: str, a_dir: Path, b_dir: Path) -> int:
    a_lines = Path(f"{a_dir}.jsonl").read_text().splitlines()
    b_lines = Path(f"{b_dir}.jsonl").read_text().splitlines()
    if len(a_lines) != len(b_lines) or not a_lines:
        print(f"[compare] MISMATCH: {len(a_lines)} vs {len(b_lines)} result lines")
        return 1
    problems: list[str] = []
    stats = {
        "lines_identical": 0,
        "maps_identical": 0,
        "masks_identical": 0,
        "boxes_equal": 0,
        "classes_equal": 0,
        "max_logit_diff": 0.0,
        "max_score_diff": 0.0,
        "max_map_diff": 0.0,
        "mask_pixels_differing": 0,
    }
    for i, (la, lb) in enumerate(zip(a_lines, b_lines, strict=True)):
        a, b = json.loads(la), json.loads(lb)
        stats["lines_identical"] += la == lb
        ma, mb = np.load(a_dir / f"{i}_map.npy"), np.load(b_dir / f"{i}_map.npy")
        ka, kb = np.load(a_dir / f"{i}_mask.npy"), np.load(b_dir / f"{i}_mask.npy")
        same_map = ma.shape == mb.shape and np.array_equal(ma.view(np.uint32), mb.view(np.uint32))
        stats["maps_identical"] += same_map
        stats["masks_identical"] += ka.shape == kb.shape and np.array_equal(ka, kb)
        stats["boxes_equal"] += a["boxes"] == b["boxes"]
        stats["classes_equal"] += a["class_index"] == b["class_index"]
        if mode == "exact":
            if la != lb or not same_map or not np.array_equal(ka, kb):
                problems.append(f"image {i} ({a['image']}): not bit-identical")
            continue
        if (a["class_index"], a["class_name"], a["size"]) != (
            b["class_index"],
            b["class_name"],
            b["size"],
        ):
            problems.append(f"image {i}: class/size {a['class_index']} {a['size']} vs {b['class_index']} {b['size']}")
            continue
        dl = float(np.max(np.abs(np.array(a["logits"]) - np.array(b["logits"]))))
        ds = abs(a["score"] - b["score"])
        dm = float(np.max(np.abs(ma.astype(np.float64) - mb)))
        stats["max_logit_diff"] = max(stats["max_logit_diff"], dl)
        stats["max_score_diff"] = max(stats["max_score_diff"], ds)
        stats["max_map_diff"] = max(stats["max_map_diff"], dm)
        thr = a["tau"] * max(float(ma.max()), float(mb.max()))
        differ = ka != kb
        stats["mask_pixels_differing"] += int(differ.sum())
        near = (np.abs(ma.astype(np.float64) - thr) <= TOL) | (np.abs(mb.astype(np.float64) - thr) <= TOL)
        if dl > TOL or ds > TOL or dm > TOL:
            problems.append(f"image {i}: logits/score/map differ by {dl:.3g}/{ds:.3g}/{dm:.3g} (> {TOL})")
        if bool((differ & ~near).any()):
            problems.append(f"image {i}: {int((differ & ~near).sum())} mask pixels differ away from the threshold")
        if a["boxes"] != b["boxes"] and not bool(differ.any()):
            problems.append(f"image {i}: boxes differ with equal masks")
    n = len(a_lines)
    summary = ", ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3g}" for k, v in stats.items())
    print(f"[compare] {mode}: {n} image(s): {summary}")
    for p in problems:
        print(f"[compare] MISMATCH: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("--exact", "--close"):
        sys.exit("usage: compare_runs.py --exact|--close X86_DIR ARM_DIR")
    sys.exit(main(sys.argv[1][2:], Path(sys.argv[2]), Path(sys.argv[3])))
