"""Backbone table: WSOL modifications, feature shapes, decoder parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcam_deploy.errors import ConfigError
from fcam_deploy.models import BACKBONES, FCAM, CAMClassifier, decoder_parameter_count, get_spec

from .conftest import expected_decoder_params

PAPER_COUNTS = {"resnet50": 9_013_218, "vgg16": 23_120_770, "inceptionv3": 5_704_674}

# Expected (channels, h, w) of every tap at 224×224, from docs/method.md §1.2 (paper backbones) and the table
# in fcam_deploy/models/backbones.py (edge and demo backbones).
SHAPES_224 = {
    "resnet50": [(64, 112, 112), (256, 56, 56), (512, 28, 28), (1024, 28, 28), (2048, 28, 28)],
    "vgg16": [(128, 112, 112), (256, 56, 56), (1024, 28, 28)],
    "inceptionv3": [(64, 112, 112), (80, 57, 57), (288, 29, 29), (768, 29, 29), (1024, 29, 29)],
    "resnet18": [(64, 112, 112), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 14, 14)],
    "mobilenetv3_large": [(16, 112, 112), (24, 56, 56), (40, 28, 28), (112, 14, 14), (960, 14, 14)],
    "efficientnet_lite0": [(16, 112, 112), (24, 56, 56), (40, 28, 28), (112, 14, 14), (1280, 14, 14)],
    "resnet18_s8": [(64, 112, 112), (64, 56, 56), (128, 28, 28)],
    "efficientnet_lite0_s8": [(16, 112, 112), (24, 56, 56), (40, 28, 28)],
    "efficientnet_lite0_s16": [(16, 112, 112), (24, 56, 56), (40, 28, 28), (112, 14, 14)],
}


def test_table_keys_cover_design() -> None:
    assert set(SHAPES_224) == set(BACKBONES)
    with pytest.raises(ConfigError, match="unknown backbone"):
        get_spec("resnet51")


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_spec_is_consistent(arch: str) -> None:
    spec = BACKBONES[arch]
    assert spec.depth == len(spec.decoder_channels)
    assert spec.cam_layer == "backbone." + spec.taps[-1].name
    assert spec.center == (arch == "vgg16")
    assert [t.name for t in spec.taps] == [p for p in spec.plan if p in {t.name for t in spec.taps}]
    assert spec.taps[-1].stride == spec.output_stride
    if arch not in ("vgg16",):  # decoder rule: tail of the paper's depth-5 series
        assert spec.decoder_channels == (256, 128, 64, 32, 16)[-spec.depth :]


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_feature_shapes_meta(arch: str) -> None:
    """Shapes of every tap at 224 (meta tensors: exact shape semantics, no compute) and the hook target."""
    with torch.device("meta"):
        clf = CAMClassifier(arch, 7).eval()
        x = torch.empty(2, 3, 224, 224)
        seen: list[torch.Size] = []
        clf.get_submodule(clf.cam_layer).register_forward_hook(lambda m, i, o: seen.append(o.shape))
        out = clf(x)
    assert [tuple(f.shape[1:]) for f in out.features] == SHAPES_224[arch]
    assert tuple(out.logits.shape) == (2, 7)
    assert seen == [out.features[-1].shape]


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_decoder_param_count(arch: str) -> None:
    with torch.device("meta"):
        model = FCAM(CAMClassifier(arch, 3))
    spec = BACKBONES[arch]
    n = decoder_parameter_count(model)
    assert n == expected_decoder_params(tuple(t.channels for t in spec.taps), spec.decoder_channels, spec.center)
    if arch in PAPER_COUNTS:
        assert n == PAPER_COUNTS[arch]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == n


def test_resnet50_wsol_strides() -> None:
    with torch.device("meta"):
        t = CAMClassifier("resnet50", 2).backbone
    for layer in (t.layer3, t.layer4):
        assert layer[0].conv2.stride == (1, 1) and layer[0].downsample[0].stride == (1, 1)
    assert t.layer2[0].conv2.stride == (2, 2)
    assert not hasattr(t, "fc") and not hasattr(t, "avgpool")


def test_vgg16_wsol_layout() -> None:
    with torch.device("meta"):
        t = CAMClassifier("vgg16", 2).backbone
    pools = [i for i, m in enumerate(t.features) if isinstance(m, nn.MaxPool2d)]
    assert pools == [4, 9, 16]  # pool1..pool3 only
    assert t.conv6.in_channels == 512 and t.conv6.out_channels == 1024 and t.conv6.kernel_size == (3, 3)
    assert isinstance(t.relu, nn.ReLU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in t.modules())


def test_inceptionv3_wsol_layout() -> None:
    with torch.device("meta"):
        t = CAMClassifier("inceptionv3", 2).backbone
    for m in t.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            assert m.padding == (1, 1)
        if isinstance(m, nn.MaxPool2d):
            assert m.padding == 1 and m.ceil_mode
    assert t.Mixed_6a.branch3x3.conv.stride == (1, 1) and t.Mixed_6a.branch3x3dbl_3.conv.stride == (1, 1)
    for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c", "AuxLogits", "fc"):
        assert not hasattr(t, name)
    assert isinstance(t.SPG_A3_1b[0], nn.Dropout) and t.SPG_A3_1b[1].out_channels == 1024
    assert isinstance(t.SPG_A3_2b[2], nn.ReLU)


def test_inceptionv3_real_forward_29() -> None:
    """A real (not meta) forward: the Mixed_6a override and forced paddings run and give 29×29."""
    clf = CAMClassifier("inceptionv3", 2).eval()
    with torch.inference_mode():
        feats = clf.features(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in feats] == SHAPES_224["inceptionv3"]
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("arch", ["resnet18_s8", "efficientnet_lite0_s8", "efficientnet_lite0_s16"])
@pytest.mark.parametrize("size", [64, 128])
def test_demo_backbones_real_forward(arch: str, size: int) -> None:
    clf = CAMClassifier(arch, 4).eval()
    with torch.inference_mode():
        feats = clf.features(torch.randn(2, 3, size, size))
    s = BACKBONES[arch].output_stride
    assert tuple(feats[-1].shape[-2:]) == (size // s, size // s)


@pytest.mark.parametrize("arch", ["resnet18_s8", "efficientnet_lite0_s8", "efficientnet_lite0_s16", "resnet18"])
def test_trunk_holds_only_modules_that_run(arch: str) -> None:
    """Unused stages are dropped from the trunk: every parameter receives a gradient."""
    clf = CAMClassifier(arch, 3).train()
    clf(torch.randn(2, 3, 64, 64)).logits.sum().backward()
    unused = [n for n, p in clf.named_parameters() if p.grad is None]
    assert unused == []
