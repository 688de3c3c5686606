"""BoxEvaluator / evaluate_maps against a brute-force oracle built on the OpenCV reference boxes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fcam_deploy.errors import InputError, MapError
from fcam_deploy.metrics import (
    BoxEvaluator,
    UndefinedMetricError,
    cam_thresholds,
    evaluate_maps,
    iou_matrix,
    load_map,
    map_path,
    resize_box,
    save_map,
)
from fcam_deploy.metrics.reference import boxes_from_scoremap


def _blob_map(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    m = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, size, 2)
        s = rng.uniform(2, 8)
        m += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    m += rng.uniform(0, 0.05, m.shape)
    return (m - m.min()) / (m.max() - m.min())


def _oracle(maps, gts, labels, preds, step, ious):  # type: ignore[no-untyped-def]
    """Literal transcription of the protocol: boxes per threshold, best IoU, hits, max over thresholds."""
    t = cam_thresholds(step)
    out: dict[str, dict[int, np.ndarray]] = {}
    for version, multi in (("v1", False), ("v2", True)):
        acc = {d: np.zeros(len(t)) for d in ious}
        top1 = {d: np.zeros(len(t)) for d in ious}
        top5 = {d: np.zeros(len(t)) for d in ious}
        for s, gt, lab, pr in zip(maps, gts, labels, preds):
            per_t = boxes_from_scoremap(s, t, multi_contour=multi)
            best = np.array([iou_matrix(b, np.array(gt)).max() for b in per_t])
            for d in ious:
                hit = best >= d / 100
                acc[d] += hit
                top1[d] += hit * (lab == pr[0])
                top5[d] += hit * (lab in pr[:5])
        out[version] = acc
        out[version + "_top1"] = top1
        out[version + "_top5"] = top5
    return t, out


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_box_evaluator_matches_oracle(engine: str) -> None:
    if engine == "fast":
        pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    n, step, ious = 8, 0.05, (30, 50, 70)
    maps = [_blob_map(rng) for _ in range(n)]
    gts = []
    for _ in range(n):
        x0, y0 = rng.integers(0, 20, 2)
        gts.append([[int(x0), int(y0), int(x0 + rng.integers(3, 12)), int(y0 + rng.integers(3, 12))]])
    labels = [int(v) for v in rng.integers(0, 3, n)]
    preds = [list(rng.permutation(6)) for _ in range(n)]
    ev = BoxEvaluator(iou_thresholds=ious, cam_curve_interval=step, engine=engine)  # type: ignore[arg-type]
    for s, g, lab, p in zip(maps, gts, labels, preds):
        ev.accumulate(s, g, label=lab, preds=p)
    res = ev.compute()
    t, o = _oracle(maps, gts, labels, preds, step, ious)
    for d in ious:
        assert res["per_iou"][str(d)] == pytest.approx(o["v2"][d].max() * 100 / n, abs=1e-12)
        assert res["best_threshold"][str(d)] == t[int(np.argmax(o["v2"][d]))]
        assert res["top1_loc"][str(d)] == pytest.approx(o["v2_top1"][d].max() * 100 / n, abs=1e-12)
        assert res["top5_loc"][str(d)] == pytest.approx(o["v2_top5"][d].max() * 100 / n, abs=1e-12)
    assert res["MaxBoxAccV2"] == pytest.approx(np.mean([o["v2"][d].max() for d in ious]) * 100 / n, abs=1e-12)
    assert res["MaxBoxAcc"] == pytest.approx(o["v1"][50].max() * 100 / n, abs=1e-12)
    assert res["best_threshold"]["MaxBoxAcc"] == t[int(np.argmax(o["v1"][50]))]
    assert res["top1_loc"]["MaxBoxAcc"] == pytest.approx(o["v1_top1"][50].max() * 100 / n, abs=1e-12)
    assert res["num_images"] == n and res["PxAP"] is None
    curves = ev.curves()
    assert np.allclose(curves["v2"]["50"], o["v2"][50] * 100 / n)


def test_fast_and_reference_evaluators_agree_at_1000_thresholds() -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    evs = [BoxEvaluator(cam_curve_interval=0.001, engine=e) for e in ("fast", "reference")]  # type: ignore[arg-type]
    for _ in range(3):
        s = _blob_map(rng, 64)
        gt = [[5, 6, 40, 50], [30, 10, 60, 30]]
        for ev in evs:
            ev.accumulate(s, gt)
    assert evs[0].compute() == evs[1].compute()


def test_top_loc_is_null_without_predictions_and_errors() -> None:
    ev = BoxEvaluator(engine="reference")
    with pytest.raises(UndefinedMetricError):
        ev.compute()
    ev.accumulate(np.zeros((8, 8)), [[0, 0, 3, 3]])
    assert ev.compute()["top1_loc"] is None
    with pytest.raises(InputError):
        ev.accumulate(np.zeros((8, 8)), [[0, 0, 3, 3]], label=1)
    with pytest.raises(InputError):
        ev.accumulate(np.zeros((8, 8)), [[0, 0, 9, 3]])  # outside the map frame
    with pytest.raises(InputError):
        ev.accumulate(np.zeros((8, 8)), np.zeros((0, 4), int))
    with pytest.raises(MapError):
        ev.accumulate(np.full((8, 8), np.nan), [[0, 0, 3, 3]])
    with pytest.raises(InputError):
        BoxEvaluator(iou_thresholds=(50, 50))
    with pytest.raises(InputError):
        BoxEvaluator(engine="gpu")  # type: ignore[arg-type]


def test_empty_map_counts_as_one_percent_box() -> None:
    """An all-zero map yields [0,0,0,0], IoU 0.01 with a 10x10 box at the origin: a hit only for IoU <= 1."""
    ev = BoxEvaluator(iou_thresholds=(1, 2), engine="reference")
    ev.accumulate(np.zeros((16, 16)), [[0, 0, 9, 9]])
    res = ev.compute()
    assert res["per_iou"] == {"1": 100.0, "2": 0.0}


def _meta(tmp: Path, n: int, rng: np.random.Generator, with_masks: bool):  # type: ignore[no-untyped-def]
    import cv2

    ids = [f"test/{k:03d}.jpg" for k in range(n)]
    sizes = {i: (int(rng.integers(50, 400)), int(rng.integers(50, 400))) for i in ids}
    boxes = {}
    masks: dict[str, list[str]] = {}
    ignore: dict[str, str | None] = {}
    for i in ids:
        w, h = sizes[i]
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
        boxes[i] = [(x0, y0, x1, y1)]
        if with_masks:
            m = np.zeros((h, w), np.uint8)
            m[y0 : y1 + 1, x0 : x1 + 1] = 255
            rel = i.replace(".jpg", "_m.png")
            (tmp / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp / "masks" / rel), m)
            masks[i] = [rel]
            ignore[i] = None
    return SimpleNamespace(image_ids=ids, sizes=sizes, boxes=boxes, masks=masks, ignore=ignore)


def test_evaluate_maps_scales_boxes_to_224_and_adds_pxap(tmp_path: Path) -> None:
    from fcam_deploy.metrics import BoxEvaluator as BE
    from fcam_deploy.metrics import MaskEvaluator, load_gt_mask

    rng = np.random.default_rng(5)
    meta = _meta(tmp_path, 5, rng, with_masks=True)
    maps = {i: _blob_map(rng, 224) for i in meta.image_ids}
    res = evaluate_maps(maps, meta, mask_root=tmp_path / "masks", engine="reference")
    box = BE(engine="reference")
    mask = MaskEvaluator()
    for i in meta.image_ids:
        box.accumulate(maps[i], [resize_box(b, meta.sizes[i]) for b in meta.boxes[i]])
        mask.accumulate(maps[i], load_gt_mask([tmp_path / "masks" / meta.masks[i][0]]))
    exp = box.compute()
    exp["PxAP"] = mask.compute()["PxAP"]
    assert res == exp
    assert res["PxAP"] is not None
    # without mask root: PxAP null; without boxes: box keys null
    assert evaluate_maps(maps, meta, engine="reference")["PxAP"] is None
    meta.boxes = {}
    nobox = evaluate_maps(maps, meta, mask_root=tmp_path / "masks")
    assert nobox["MaxBoxAccV2"] is None and nobox["MaxBoxAcc"] is None and nobox["PxAP"] == exp["PxAP"]


def test_map_files_round_trip_and_errors(tmp_path: Path) -> None:
    s = np.linspace(0, 1, 224 * 224).reshape(224, 224)
    p = save_map(tmp_path, "val/a/1.jpg", s)
    assert p == tmp_path / "val" / "a" / "1.jpg.npy"  # image extension kept, like np.save in the reference
    assert np.array_equal(load_map(tmp_path, "val/a/1.jpg"), s.astype(np.float32).astype(np.float64))
    with pytest.raises(MapError, match="missing"):
        load_map(tmp_path, "val/a/2.jpg")
    np.save(tmp_path / "nan.jpg.npy", np.full((224, 224), np.nan))
    with pytest.raises(MapError, match="nan.jpg.npy.*NaN"):
        load_map(tmp_path, "nan.jpg")
    np.save(tmp_path / "big.jpg.npy", np.full((224, 224), 1.5))
    with pytest.raises(MapError, match=r"big.jpg.npy.*\[0, 1\]"):
        load_map(tmp_path, "big.jpg")
    np.save(tmp_path / "small.jpg.npy", np.zeros((100, 100)))
    with pytest.raises(MapError, match="small.jpg.npy.*224x224"):
        load_map(tmp_path, "small.jpg")
    np.save(tmp_path / "obj.jpg.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MapError, match="obj.jpg.npy"):
        load_map(tmp_path, "obj.jpg")
    (tmp_path / "junk.jpg.npy").write_bytes(b"junk")
    with pytest.raises(MapError, match="junk.jpg.npy"):
        load_map(tmp_path, "junk.jpg")
    with pytest.raises(InputError):
        map_path(tmp_path, "../escape.jpg")
