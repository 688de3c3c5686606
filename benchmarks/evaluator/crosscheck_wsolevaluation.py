"""Cross-check fcam_deploy.metrics against the unmodified wsolevaluation code (clovaai/wsolevaluation).

    git clone https://github.com/clovaai/wsolevaluation /path/to/wsolevaluation
    fcam data synth --out /tmp/ds60 --train 0 --val 0 --test 60 --classes 4 --seed 3
    .venv/bin/python benchmarks/evaluator/crosscheck_wsolevaluation.py --wsol /path/to/wsolevaluation \\
        --synth /tmp/ds60

Imports the reference's ``evaluation.py`` from that checkout (with the shims of docs/protocol.md §1.6: ``np.float``
/ ``np.int`` aliases, stub ``munch`` / ``torchvision`` modules), then scores the same maps with both:

* MaxBoxAcc per IoU with ``multi_contour_eval`` True (V2) and False (v1) at steps 0.01 and 0.001, on the synthetic
  set with CAM-like maps correlated with the GT (blurred, partly dropped GT mask + distractor blobs + noise) and uncorrelated ones;
* PxAP on the reference's own OpenImages test masks (tests/metrics/data/wsolevaluation) with random maps.

Exits non-zero on the first difference (numbers must be identical, not close).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "tests" / "metrics" / "data" / "wsolevaluation"


def _import_reference(repo: Path):  # type: ignore[no-untyped-def]
    np.float = float  # type: ignore[attr-defined]  # removed in numpy 1.24, used by the reference
    np.int = int  # type: ignore[attr-defined]

    class _Munch(dict):  # type: ignore[type-arg]
        __getattr__ = dict.__getitem__

        def __setattr__(self, k: str, v: object) -> None:
            self[k] = v

    for name in ("munch", "torchvision", "torchvision.transforms"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["munch"].Munch = _Munch  # type: ignore[attr-defined]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]  # type: ignore[attr-defined]
    sys.path.insert(0, str(repo))
    import evaluation  # type: ignore[import-not-found]

    return evaluation


def _quiet(fn):  # type: ignore[no-untyped-def]
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def main() -> None:
    import cv2

    from fcam_deploy.data import load_metadata
    from fcam_deploy.metrics import evaluate_maps, load_gt_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsol", type=Path, required=True, help="checkout of clovaai/wsolevaluation")
    ap.add_argument("--synth", type=Path, required=True, help="a synthetic set (fcam data synth) with a test split")
    args = ap.parse_args()
    W = _import_reference(args.wsol)
    sys.path.insert(0, str(HERE))
    from run import make_maps  # type: ignore[import-not-found]

    mroot = args.synth / "metadata" / "test"
    meta = load_metadata(mroot, args.synth / "images", args.synth / "masks", check_files=False)
    rng = np.random.default_rng(0)
    correlated = {}
    for i in meta.image_ids:
        gt = load_gt_mask([args.synth / "masks" / p for p in meta.masks[i]]).astype(np.float64)
        part = gt * (rng.random(gt.shape) < rng.uniform(0.05, 1.0))  # partial coverage, like a CAM
        m = cv2.GaussianBlur(part, (0, 0), float(rng.uniform(3, 25))) * rng.uniform(0.3, 1.0)
        yy, xx = np.mgrid[0:224, 0:224]
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, 224, 2)
            m += rng.uniform(0, 0.6) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(5, 40) ** 2))
        m += rng.normal(0, 0.03, m.shape)
        correlated[i] = (m - m.min()) / (m.max() - m.min())
    uncorrelated = dict(zip(meta.image_ids, make_maps(len(meta.image_ids), 1)[0]))
    n_checks = 0
    for label, maps in (("correlated", correlated), ("uncorrelated", uncorrelated)):
        for step in (0.01, 0.001):
            ids = meta.image_ids if step == 0.01 else meta.image_ids[:20]
            ours = evaluate_maps(maps, meta, cam_curve_interval=step, engine="fast", image_ids=ids)
            for multi, key in ((True, "per_iou"), (False, "per_iou_v1")):
                md = W.configure_metadata(str(mroot) + "/")
                ev = W.BoxEvaluator(
                    metadata=md,
                    dataset_name="CUB",
                    split="test",
                    cam_threshold_list=list(np.arange(0, 1, step)),
                    iou_threshold_list=[30, 50, 70],
                    mask_root=None,
                    multi_contour_eval=multi,
                )
                for i in ids:
                    ev.accumulate(maps[i], i)
                ref = [float(v) for v in _quiet(ev.compute)]
                got = [ours[key][k] for k in ("30", "50", "70")]
                print(
                    f"{label:12s} step {step:<6} n={len(ids):3d} {'V2' if multi else 'v1'}: "
                    f"wsolevaluation {ref} fcam_deploy {got}"
                )
                if ref != got:
                    raise SystemExit("MISMATCH")
                n_checks += 1
    # PxAP on the reference's own test masks
    oroot = FIXTURES / "metadata" / "OpenImages" / "val"
    masks = FIXTURES / "test_data" / "test_masks"
    md = W.configure_metadata(str(oroot) + "/")
    ometa = load_metadata(oroot, FIXTURES, masks, check_files=False)
    for power in (1, 2, 4):
        maps = {i: rng.random((224, 224)) ** power for i in ometa.image_ids}
        ev = W.MaskEvaluator(
            metadata=md,
            dataset_name="OpenImages",
            split="val",
            cam_threshold_list=list(np.arange(0, 1, 0.01)),
            iou_threshold_list=[30, 50, 70],
            mask_root=str(masks),
            multi_contour_eval=False,
        )
        for i in ometa.image_ids:
            ev.accumulate(maps[i], i)
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_pxap = float(_quiet(ev.compute))
        got_pxap = evaluate_maps(maps, ometa, mask_root=masks)["PxAP"]
        print(f"PxAP (random maps ** {power}): wsolevaluation {ref_pxap} fcam_deploy {got_pxap}")
        if ref_pxap != got_pxap:
            raise SystemExit("MISMATCH")
        n_checks += 1
    print(f"ALL {n_checks} COMPARISONS IDENTICAL")


if __name__ == "__main__":
    main()
