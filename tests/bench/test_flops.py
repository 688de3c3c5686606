"""MAC counting: the torch counter and the independent ONNX-graph counter agree, and hit the ResNet50 anchor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from fcam_deploy.bench.flops import count_onnx_macs, count_torch_macs


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["images"],
        output_names=["out"],
        dynamo=False,
        dynamic_axes={"images": {0: "batch"}},
    )


def test_small_net_agrees_with_hand_count(tmp_path: Path) -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8*16*16 outputs * 27
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 8*16*16 * (2*9)
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2),  # 8*16*16 inputs * 4*4
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 5),  # 20
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    hand = 2 * (8 * 256 * 27 + 8 * 256 * 18 + 8 * 256 * 16 + 20)
    with torch.no_grad():
        assert count_torch_macs(lambda: net(x)) == hand
    p = tmp_path / "n.onnx"
    _export(net, x, p)
    assert count_onnx_macs(p, {"images": [2, 3, 16, 16]}) == hand


@pytest.mark.slow
def test_resnet50_anchor_both_counters(tmp_path: Path) -> None:
    net = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch_macs = count_torch_macs(lambda: net(x))
    assert torch_macs / 1e9 == pytest.approx(4.09, abs=0.01)  # the usual ResNet50 figure: 4.09 GMAC at 224
    p = tmp_path / "r50.onnx"
    _export(net, x, p)
    onnx_macs = count_onnx_macs(p, {"images": [1, 3, 224, 224]})
    assert abs(onnx_macs - torch_macs) / torch_macs < 0.02


def test_backward_is_counted() -> None:
    lin = torch.nn.Linear(10, 10)
    x = torch.randn(4, 10)
    fwd = count_torch_macs(lambda: lin(x))
    both = count_torch_macs(lambda: lin(x).sum().backward())
    assert fwd == 400 and both > fwd
