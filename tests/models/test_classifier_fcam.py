"""CAM classifier and F-CAM model: CAM oracle, frozen classifier, decoder semantics, output contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fcam_deploy.errors import InputError
from fcam_deploy.models import FCAM, CAMClassifier, FCAMOutput, build_classifier
from fcam_deploy.models.fcam import DecoderBlock

ARCHS_SMALL = ["resnet18_s8", "efficientnet_lite0_s8", "efficientnet_lite0_s16"]


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("arch", ARCHS_SMALL)
def test_cam_equals_hooked_einsum(arch: str) -> None:
    clf = CAMClassifier(arch, 5).eval()
    _randomise_bn(clf)
    hooked: list[torch.Tensor] = []
    h = clf.get_submodule(clf.cam_layer).register_forward_hook(lambda m, i, o: hooked.append(o.detach().clone()))
    x = torch.randn(3, 3, 64, 80)
    classes = torch.tensor([4, 0, 2])
    with torch.no_grad():
        out = clf(x)
        cam = clf.cam(out.features[-1], classes)
    h.remove()
    (a,) = hooked
    w = clf.head.weight.detach().numpy()
    ref = torch.from_numpy(__import__("numpy").einsum("nk,nkhw->nhw", w[classes.numpy()], a.numpy().astype("float64")))
    torch.testing.assert_close(cam.double(), ref, rtol=1e-5, atol=1e-5)
    # logits = Linear(GAP(A)) with bias
    ref_logits = a.mean(dim=(2, 3)) @ clf.head.weight.T + clf.head.bias
    torch.testing.assert_close(out.logits, ref_logits, rtol=1e-5, atol=1e-5)
    # CAM identity: spatial mean of the CAM + bias = the class logit
    torch.testing.assert_close(
        cam.mean(dim=(1, 2)) + clf.head.bias[classes], out.logits[torch.arange(3), classes], rtol=1e-4, atol=1e-4
    )


def test_input_errors() -> None:
    clf = CAMClassifier("resnet18_s8", 3).eval()
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        clf(torch.randn(1, 1, 32, 32))
    with pytest.raises(InputError, match="floating"):
        clf(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    a = torch.randn(2, 128, 4, 4)
    with pytest.raises(InputError, match="out of range"):
        clf.cam(a, torch.tensor([0, 3]))
    with pytest.raises(InputError, match="shape"):
        clf.cam(a, torch.tensor([0]))


@pytest.mark.parametrize("arch", ARCHS_SMALL)
def test_frozen_classifier_training_step(arch: str) -> None:
    model = FCAM(build_classifier(arch, 4))
    _randomise_bn(model.classifier)
    clf_before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    model.train()
    assert not model.classifier.training and all(not m.training for m in model.classifier.modules())
    assert model.decoder.training and model.seg_head.training
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    x = torch.randn(4, 3, 64, 64)
    out = model(x, torch.tensor([0, 1, 2, 3]))
    target = (torch.rand(4, 64, 64) > 0.5).long()
    loss = F.cross_entropy(out.seg_logits, target)
    loss.backward()
    opt.step()
    assert all(p.grad is None and not p.requires_grad for p in model.classifier.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())
    for k, v in model.classifier.state_dict().items():
        assert torch.equal(v, clf_before[k]), k  # no BN stat update, no weight change
    changed = [
        k for k, v in model.decoder.state_dict().items() if "running_mean" in k and not torch.equal(v, dec_before[k])
    ]
    assert changed, "the decoder's own BN should be in train mode and update its statistics"
    assert not out.logits.requires_grad and not out.cam.requires_grad
    model.train(True)
    assert not model.classifier.training
    model.eval()
    assert not model.decoder.training


@pytest.mark.parametrize("arch", ARCHS_SMALL)
@pytest.mark.parametrize("hw", [(64, 64), (65, 77), (33, 50)])
def test_output_contract_odd_sizes(arch: str, hw: tuple[int, int]) -> None:
    model = FCAM(build_classifier(arch, 3)).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        out = model(x)
        out2 = model(x)
    assert isinstance(out, FCAMOutput)
    assert out.seg_logits.shape == (2, 2, *hw) and out.fg_prob.shape == (2, *hw)
    assert out.fg_prob.dtype == torch.float32
    assert float(out.fg_prob.min()) >= 0.0 and float(out.fg_prob.max()) <= 1.0
    torch.testing.assert_close(out.fg_prob, torch.softmax(out.seg_logits, 1)[:, 1])
    # default CAM class = predicted class
    feats = model.classifier.features(x)
    torch.testing.assert_close(out.cam, model.classifier.cam(feats[-1], out.logits.argmax(1)))
    # pure: same inputs, same outputs
    for a, b in zip(out, out2):
        assert torch.equal(a, b)


def test_decoder_block_two_step_upsampling() -> None:
    """nearest ×2, then bilinear align_corners=True to the skip size only when sizes differ (§1.4)."""
    block = DecoderBlock(3, 2, 4).eval()
    x = torch.randn(1, 3, 7, 7)
    seen: list[torch.Tensor] = []
    block.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    skip_same = torch.randn(1, 2, 7, 7)  # 7 -> 14 nearest -> 7 bilinear (the ResNet50 B1/B2 case)
    block(x, skip_same)
    up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    # independent oracle of align_corners=True resampling 14 -> 7: sample at i*(13/6)
    pos = torch.arange(7, dtype=torch.float64) * 13 / 6
    i0 = pos.floor().long().clamp(max=12)
    fr = (pos - i0).float()
    rows = up[..., i0, :] * (1 - fr)[:, None] + up[..., i0 + 1, :] * fr[:, None]
    ref = rows[..., i0] * (1 - fr) + rows[..., i0 + 1] * fr
    torch.testing.assert_close(seen[0][:, :3], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen[0][:, 3:], skip_same)
    seen.clear()
    block(x, torch.randn(1, 2, 14, 14))  # sizes match after ×2: nearest only
    torch.testing.assert_close(seen[0][:, :3], up)


@torch.no_grad()
def test_decoder_init() -> None:
    model = FCAM(build_classifier("resnet18_s8", 2))
    for m in model.decoder.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * 9
            bound = (6.0 / fan_in) ** 0.5  # kaiming_uniform, relu gain sqrt(2)
            assert m.bias is None and float(m.weight.abs().max()) <= bound
            assert float(m.weight.abs().max()) > 0.8 * bound
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    w = model.seg_head.weight
    xb = (6.0 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5
    assert float(w.abs().max()) <= xb and torch.all(model.seg_head.bias == 0)
    assert model.seg_head.out_channels == 2 and model.seg_head.kernel_size == (3, 3)
