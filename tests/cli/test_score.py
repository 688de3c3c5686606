"""`fcam score` end to end on a synthetic set in the wsolevaluation layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fcam_deploy import cli
from fcam_deploy.metrics import evaluate_maps, load_gt_mask, save_map


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fcam_deploy.data.synth import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, SynthConfig(num_classes=3), {"train": 0, "val": 0, "test": 6}, seed=1)
    return root


def _meta(root: Path):  # type: ignore[no-untyped-def]
    from fcam_deploy.data import open_dataset

    return open_dataset(root, "test", check_files=False)


def _score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | None, str]:  # type: ignore[type-arg]
    """Run `fcam score` on maps the test wrote by hand (no eval manifest: --no-manifest)."""
    out = Path(args[args.index("--json") + 1])
    rc = cli.main(["score", "--no-progress", "--no-manifest", *args])
    err = capsys.readouterr().err
    return rc, (json.loads(out.read_text()) if rc == 0 else None), err


def test_perfect_maps_score_100(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = _meta(dataset)
    for i in meta.image_ids:
        m = load_gt_mask([dataset / "masks" / p for p in meta.masks[i]])
        save_map(tmp_path / "maps", i, m.astype(np.float64))
    rc, res, _ = _score(
        capsys,
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(dataset),
        "--split",
        "test",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 0 and res is not None
    assert res["PxAP"] == 100.0
    assert set(res) >= {"MaxBoxAcc", "MaxBoxAccV2", "PxAP", "per_iou", "best_threshold", "num_images"}
    assert res["num_images"] == len(meta.image_ids)
    assert set(res["per_iou"]) == {"30", "50", "70"}
    # the box of a mask's filled region overshoots by one pixel (protocol +1), so IoU is high but < 1
    assert res["per_iou"]["30"] == 100.0 and res["per_iou"]["50"] == 100.0


def test_score_equals_evaluate_maps_and_null_without_masks(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _meta(dataset)
    rng = np.random.default_rng(0)
    maps = {}
    for i in meta.image_ids:
        s = rng.random((224, 224)) ** 3
        save_map(tmp_path / "maps", i, s)
        maps[i] = s.astype(np.float32).astype(np.float64)
    rc, res, _ = _score(
        capsys,
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(dataset / "metadata" / "test"),
        "--cam-curve-interval",
        "0.05",
        "--iou",
        "40",
        "50",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 0 and res is not None
    assert res["PxAP"] is None  # masks listed but no --masks root
    expected = evaluate_maps(maps, meta, cam_curve_interval=0.05, iou_thresholds=(40, 50), engine="reference")
    assert res == json.loads(json.dumps(expected))
    rc, res2, _ = _score(
        capsys,
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(dataset / "metadata" / "test"),
        "--masks",
        str(dataset / "masks"),
        "--cam-curve-interval",
        "0.05",
        "--iou",
        "40",
        "50",
        "--json",
        str(tmp_path / "r2.json"),
    )
    assert rc == 0 and res2 is not None and res2["PxAP"] is not None


def test_predictions_give_top_loc(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = _meta(dataset)
    for i in meta.image_ids:
        m = load_gt_mask([dataset / "masks" / p for p in meta.masks[i]])
        save_map(tmp_path / "maps", i, m.astype(np.float64))
    wrong = meta.image_ids[0]
    preds = {i: [meta.labels[i]] + [c for c in range(3) if c != meta.labels[i]] for i in meta.image_ids}
    preds[wrong] = preds[wrong][1:] + preds[wrong][:1]  # GT class last of 3: top-5 hit, top-1 miss
    (tmp_path / "p.json").write_text(json.dumps(preds))
    rc, res, _ = _score(
        capsys,
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(dataset),
        "--split",
        "test",
        "--predictions",
        str(tmp_path / "p.json"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 0 and res is not None
    n = len(meta.image_ids)
    assert res["top1_loc"]["50"] == pytest.approx(100.0 * (n - 1) / n)
    assert res["top5_loc"]["50"] == 100.0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((224, 224), np.nan), "NaN"),
        (np.full((224, 224), 1.01), r"\[0, 1\]"),
        (np.zeros((100, 120)), "224x224"),
        (None, "missing"),
    ],
)
def test_bad_map_names_the_file(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: np.ndarray | None, match: str
) -> None:
    meta = _meta(dataset)
    for i in meta.image_ids:
        save_map(tmp_path / "maps", i, np.zeros((224, 224)))
    victim = meta.image_ids[2]
    target = tmp_path / "maps" / f"{victim}.npy"
    if bad is None:
        target.unlink()
    else:
        np.save(target, bad)
    rc, _, err = _score(
        capsys,
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(dataset),
        "--split",
        "test",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 2
    assert "fcam score: error:" in err and f"{victim}.npy" in err
    import re

    assert re.search(match, err)
    assert not (tmp_path / "r.json").exists()


def test_bad_arguments(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "maps").mkdir()
    rc, _, err = _score(
        capsys, "--maps", str(tmp_path / "maps"), "--metadata", str(dataset), "--json", str(tmp_path / "r.json")
    )
    assert rc == 2 and "--split" in err
    rc, _, err = _score(
        capsys,
        "--maps",
        str(tmp_path / "nope"),
        "--metadata",
        str(dataset),
        "--split",
        "test",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 2 and "not a folder" in err
    rc, _, err = _score(
        capsys, "--maps", str(tmp_path / "maps"), "--metadata", str(tmp_path), "--json", str(tmp_path / "r.json")
    )
    assert rc == 2 and "image_ids.txt" in err
    shutil.rmtree(tmp_path / "maps")
