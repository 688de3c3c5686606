"""`fcam eval` end to end: a real (randomly initialised) checkpoint, CAM and F-CAM maps, saved maps re-scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fcam_deploy import cli

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from fcam_deploy.data.synth import SynthConfig, generate_synthetic
    from fcam_deploy.models import FCAM, build_classifier
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint

    root = tmp_path_factory.mktemp("eval")
    generate_synthetic(root / "ds", SynthConfig(num_classes=3), {"train": 0, "val": 0, "test": 5}, seed=2)
    torch.manual_seed(0)
    clf = build_classifier("resnet18", 3)
    meta = CheckpointMeta(arch="resnet18", num_classes=3, class_names=["a", "b", "c"])
    save_checkpoint(root / "clf", clf, meta)
    save_checkpoint(
        root / "fcam", FCAM(clf), CheckpointMeta(arch="resnet18", num_classes=3, class_names=["a", "b", "c"])
    )
    return root / "ds", root / "clf", root / "fcam"


def _run(*args: str) -> int:
    return cli.main(list(args))


@pytest.mark.parametrize(("method", "ckpt_kind"), [("cam", "clf"), ("fcam", "fcam"), ("gradcam", "fcam")])
def test_eval_then_score_saved_maps_gives_the_same_numbers(
    setup: tuple[Path, Path, Path], tmp_path: Path, method: str, ckpt_kind: str
) -> None:
    ds, clf, fcam = setup
    ckpt = clf if ckpt_kind == "clf" else fcam
    rc = _run(
        "eval",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(ds),
        "--split",
        "test",
        "--method",
        method,
        "--json",
        str(tmp_path / "e.json"),
        "--save-maps",
        str(tmp_path / "maps"),
        "--no-progress",
        "--batch-size",
        "2",
    )
    assert rc == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["num_images"] == 5 and ev["method"] == method
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP"):
        assert isinstance(ev[key], float) and 0.0 <= ev[key] <= 100.0
    assert ev["classification"] is not None and ev["top1_loc"] is not None
    saved = sorted(p.relative_to(tmp_path / "maps").as_posix() for p in (tmp_path / "maps").rglob("*.npy"))
    assert saved == sorted(f"test/{k:06d}.png.npy" for k in range(5))
    arr = np.load(tmp_path / "maps" / "test" / "000000.png.npy")
    assert arr.shape == (224, 224) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    rc = _run(
        "score",
        "--maps",
        str(tmp_path / "maps"),
        "--metadata",
        str(ds),
        "--split",
        "test",
        "--predictions",
        str(tmp_path / "maps" / "predictions.json"),
        "--json",
        str(tmp_path / "s.json"),
        "--no-progress",
    )
    assert rc == 0
    sc = json.loads((tmp_path / "s.json").read_text())
    for key in (
        "MaxBoxAcc",
        "MaxBoxAccV2",
        "PxAP",
        "per_iou",
        "per_iou_v1",
        "best_threshold",
        "top1_loc",
        "top5_loc",
        "num_images",
    ):
        assert sc[key] == ev[key], key


def test_fcam_method_needs_an_fcam_checkpoint(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, clf, _ = setup
    rc = _run(
        "eval",
        "--checkpoint",
        str(clf),
        "--data",
        str(ds),
        "--method",
        "fcam",
        "--json",
        str(tmp_path / "e.json"),
        "--no-progress",
    )
    assert rc == 2
    assert "F-CAM" in capsys.readouterr().err
    rc = _run(
        "eval",
        "--checkpoint",
        str(clf),
        "--data",
        str(ds),
        "--method",
        "lpcam",
        "--json",
        str(tmp_path / "e.json"),
        "--no-progress",
    )
    assert rc == 2
    assert "--lpcam-prototypes" in capsys.readouterr().err
    rc = _run(
        "eval",
        "--checkpoint",
        str(tmp_path / "none"),
        "--data",
        str(ds),
        "--json",
        str(tmp_path / "e.json"),
        "--no-progress",
    )
    assert rc == 2
    assert not (tmp_path / "e.json").exists()


def test_eval_runs_the_model_at_the_checkpoint_input_size(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A 64-px checkpoint is run on 64-px images and its maps are resized to 224 (not fed 224-px images)."""
    import torch.nn.functional as F

    from fcam_deploy.cams import compute_maps
    from fcam_deploy.data import WSOLDataset, open_dataset
    from fcam_deploy.models import FCAM
    from fcam_deploy.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint

    ds, clf_dir, _ = setup
    clf, _ = load_checkpoint(clf_dir)
    save_checkpoint(
        tmp_path / "f64",
        FCAM(clf),
        CheckpointMeta(arch="resnet18", num_classes=3, class_names=["a", "b", "c"], input_size=(64, 64)),
    )
    for method in ("fcam", "cam"):
        rc = _run(
            "eval",
            "--checkpoint",
            str(tmp_path / "f64"),
            "--data",
            str(ds),
            "--split",
            "test",
            "--method",
            method,
            "--json",
            str(tmp_path / f"{method}.json"),
            "--save-maps",
            str(tmp_path / method),
            "--no-progress",
        )
        assert rc == 0
        ev = json.loads((tmp_path / f"{method}.json").read_text())
        assert ev["input_size"] == [64, 64]
        model, meta = load_checkpoint(tmp_path / "f64")
        assert model.input_size == (64, 64)
        data = WSOLDataset(open_dataset(ds, "test"), train=False, size=64, mean=meta.mean, std=meta.std)
        item = data[0]
        net = model if method == "fcam" else model.classifier
        with torch.no_grad():
            full = compute_maps(net, item["image"][None], method, classes=item["label"][None]).full
        assert full.shape[-2:] == (64, 64)
        want = F.interpolate(full[:, None].float(), size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
        got = np.load(tmp_path / method / "test" / "000000.png.npy")
        # (batch 16 vs 1 moves conv outputs by ~1e-6; a 224-px forward would differ everywhere)
        np.testing.assert_allclose(got, np.clip(want.numpy(), 0, 1), atol=1e-5, rtol=0)


def _gt_class_cam_oracle(ckpt: Path, ds: Path, image_id: str, label: int) -> tuple[np.ndarray, int]:
    """The protocol's GT-known CAM, written out: the eval transform by hand (PIL bilinear resize to 224,
    ImageNet normalisation), features A of the last layer, sum_k W[label, k] A_k, min-max, bilinear upsampling to
    224 (align_corners=False). Returns (map, predicted class)."""
    from PIL import Image

    from fcam_deploy.models import load_checkpoint

    model, meta = load_checkpoint(ckpt)
    img = Image.open(ds / "images" / image_id).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0 - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
    xt = torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        feats = model.features(xt)[-1][0]  # (C, h, w)
        logits = model.head(feats.mean(dim=(1, 2)))
        cam = torch.einsum("k,khw->hw", model.head.weight[label], feats)
        lo, hi = cam.min(), cam.max()
        cam = (cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)
        up = torch.nn.functional.interpolate(cam[None, None], size=(224, 224), mode="bilinear", align_corners=False)
    return up[0, 0].clamp(0, 1).numpy(), int(logits.argmax())


def test_eval_explains_the_ground_truth_class(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """GT-known evaluation (the protocol): each saved map is the CAM of the image's label, also for images whose
    predicted class differs (the check fails when eval explains the prediction instead)."""
    ds, clf, _ = setup
    rc = _run(
        "eval",
        "--checkpoint",
        str(clf),
        "--data",
        str(ds),
        "--split",
        "test",
        "--method",
        "cam",
        "--json",
        str(tmp_path / "e.json"),
        "--save-maps",
        str(tmp_path / "maps"),
        "--no-progress",
    )
    assert rc == 0
    labels = dict(line.split(",") for line in (ds / "metadata" / "test" / "class_labels.txt").read_text().split())
    mismatched = 0
    for image_id, label in labels.items():
        expected, pred = _gt_class_cam_oracle(clf, ds, image_id, int(label))
        saved = np.load(tmp_path / "maps" / f"{image_id}.npy")
        np.testing.assert_allclose(saved, expected, atol=2e-5, err_msg=image_id)
        mismatched += int(pred != int(label))
    assert mismatched >= 1, "no image where the predicted class differs from the label: the check would be vacuous"
