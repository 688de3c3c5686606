"""One F-CAM training step through the real entry point (``train_fcam``) against an oracle built here.

The oracle rebuilds the step from its definition: the batch from the image files (mirror-symmetric images and
``resize_size == input_size``, so the random crop and flip are identities), the GT-class CAM of the frozen
classifier, min-max normalised and bilinearly upsampled, the seeds written out in NumPy (Otsu ROI by
scikit-image, the lowest ``min_p`` pixels by a stable sort; every candidate drawn, no dilation, so no RNG is
involved), then ``fcam_loss``. The logged step loss (and its three terms) must equal the oracle's, and the
weights after the step must be ``init - lr * grad`` of the oracle loss (plain SGD), so a step that uses other
seeds, the predicted class, another batch or skips a term fails here in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SIZE = 32
LR = 0.05


@pytest.fixture(scope="module")
def step_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from PIL import Image

    from fcam_deploy.data import SynthConfig, generate_synthetic
    from fcam_deploy.models import build_classifier
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint

    root = tmp_path_factory.mktemp("step")
    data = root / "set"
    generate_synthetic(data, SynthConfig(size=SIZE, num_classes=3), {"train": 4, "val": 4, "test": 2}, seed=11)
    for image_id in (data / "metadata" / "train" / "image_ids.txt").read_text().split():
        p = data / "images" / image_id
        a = np.asarray(Image.open(p).convert("RGB")).copy()
        a[:, SIZE // 2 :] = a[:, : SIZE // 2][:, ::-1]  # mirror-symmetric: the random flip changes nothing
        Image.fromarray(a).save(p)
    torch.manual_seed(3)
    clf = build_classifier("efficientnet_lite0_s8", 3)
    save_checkpoint(
        root / "cls", clf, CheckpointMeta(arch="efficientnet_lite0_s8", num_classes=3, input_size=(SIZE, SIZE))
    )
    return {"data": data, "cls": root / "cls", "root": root}


def _cfg(epochs: int):  # type: ignore[no-untyped-def]
    from fcam_deploy.train import load_train_config

    n = 10**6  # more than any candidate set: every candidate is drawn, the sampler's RNG plays no role
    return load_train_config(
        "fcam",
        "demo",
        {
            "epochs": epochs,
            "batch_size": 4,
            "resize_size": SIZE,
            "optim": {"lr": LR, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
            "seeds": {"n_fg": n, "n_bg": n, "dilate_k": 1},
            "crf": {"kernel": "pooled", "grid": 8, "lam": 2e-7, "scale_lam_with_size": False},
        },
    )


def _oracle_seeds(cam_up: np.ndarray, min_p: float, erode_k: int) -> np.ndarray:
    """Seeds of one (H, W) map in [0, 1] with every candidate drawn and no dilation."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    h, w = cam_up.shape
    u8 = (np.clip(cam_up, 0, 1) * 255).astype(np.uint8)  # truncation
    out = np.full((h, w), -255, np.int64)
    if u8.min() == u8.max():
        return out
    t = int(min(max(float(threshold_otsu(u8)), 1.0), 254.0))
    roi = u8 > t
    k = max(1, int(2 * round((erode_k * min(h, w) / 224 - 1) / 2) + 1))
    if k > 1:
        eroded = ndimage.binary_erosion(roi, structure=np.ones((k, k), bool), border_value=1)
        roi = eroded if eroded.any() else roi
    order = np.argsort(cam_up.reshape(-1), kind="stable")
    bg = np.zeros(h * w, bool)
    bg[order[: int(min_p * h * w)]] = True
    bg = bg.reshape(h, w)
    out[roi & ~bg] = 1
    out[bg & ~roi] = 0
    return out


@pytest.mark.slow
def test_one_training_step_is_fcam_loss_on_independently_built_seeds(step_setup: dict[str, Path]) -> None:
    from PIL import Image
    from safetensors.torch import load_file

    from fcam_deploy.models import FCAM
    from fcam_deploy.models.checkpoint import load_checkpoint
    from fcam_deploy.train import train_fcam
    from fcam_deploy.train.losses import fcam_loss

    data, root = step_setup["data"], step_setup["root"]
    train_fcam(_cfg(0), step_setup["cls"], data, root / "zero", progress=False, device="cpu")  # initial weights
    train_fcam(_cfg(1), step_setup["cls"], data, root / "one", progress=False, device="cpu")  # one step
    steps = [json.loads(x) for x in (root / "one" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 1

    # the batch, from the files
    clf, meta = load_checkpoint(step_setup["cls"])
    ids = (data / "metadata" / "train" / "image_ids.txt").read_text().split()
    labels = dict(x.split(",") for x in (data / "metadata" / "train" / "class_labels.txt").read_text().split())
    raw = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(data / "images" / i).convert("RGB"), np.float32)).permute(2, 0, 1)
            for i in ids
        ]
    )
    mean, std = torch.tensor(meta.mean)[:, None, None], torch.tensor(meta.std)[:, None, None]
    x = ((raw / 255.0 - mean) / std).float()
    y = torch.tensor([int(labels[i]) for i in ids])

    model = FCAM(clf)
    init = load_file(str(root / "zero" / "last" / "model.safetensors"))
    model.load_state_dict(init)
    model.train()
    out = model(x, classes=y)
    cfg = _cfg(1)
    with torch.no_grad():
        cam = out.cam.double()
        lo = cam.flatten(1).min(1).values[:, None, None]
        hi = cam.flatten(1).max(1).values[:, None, None]
        norm = torch.where(hi > lo, (cam - lo) / (hi - lo), torch.zeros_like(cam)).float()
        up = F.interpolate(norm[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    seeds = torch.from_numpy(np.stack([_oracle_seeds(m, cfg.seeds.min_p, cfg.seeds.erode_k) for m in up.numpy()]))
    assert (seeds == 1).any() and (seeds == 0).any()  # not vacuous: both kinds of seed
    parts = fcam_loss(
        out.seg_logits,
        seeds,
        raw,
        seed_lambda=cfg.seed_lambda,
        crf=cfg.crf,
        elb_t=cfg.elb.init_t,
        size_lambda=cfg.elb.lam,
    )
    logged = steps[0]
    for key, val in (("loss", parts.total), ("seed", parts.seed), ("crf", parts.crf), ("size", parts.size)):
        assert logged[key] == pytest.approx(float(val.detach()), rel=1e-4, abs=1e-7), key
    assert float(parts.crf) != 0.0 and float(parts.seed) > 0.0

    # the update is plain SGD on that loss
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(parts.total, [params[n] for n in names])
    after = load_file(str(root / "one" / "last" / "model.safetensors"))
    moved = 0
    for n, g in zip(names, grads, strict=True):
        expected = -LR * g.double()
        got = after[n].double() - init[n].double()
        assert float((got - expected).norm()) <= 2e-3 * float(expected.norm()) + 1e-9, n
        moved += int(float(expected.norm()) > 0)
    assert moved >= 10
    for n, p in params.items():  # the frozen classifier did not move
        if not p.requires_grad:
            assert torch.equal(after[n], init[n]), n
