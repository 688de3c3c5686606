"""The CAM API on the project's own models: CAMClassifier (resnet18_s8 demo trunk, random init, no download) and
the F-CAM map (fcam_deploy.models.FCAM and a stand-in with a low-res fg_prob)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from fcam_deploy.cams import compute_maps
from fcam_deploy.errors import InputError

models = pytest.importorskip("fcam_deploy.models")


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    torch.manual_seed(0)
    return models.build_classifier("resnet18_s8", 4).eval()


def test_camclassifier_closed_form_equals_autograd_and_cam_contract(classifier) -> None:
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    cls = torch.tensor([1, 3])
    training = [m.training for m in classifier.modules()]
    for method in ("gradcam", "gradcampp", "xgradcam", "layercam"):
        cf = compute_maps(classifier, x, method, cls, impl="closed_form")
        ag = compute_maps(classifier, x, method, cls, impl="autograd")
        assert float((cf.lowres - ag.lowres).abs().max()) < 1e-5, method
    res = compute_maps(classifier, x, "cam", cls)
    with torch.no_grad():
        raw = classifier.cam(classifier(x).features[-1], cls)  # the model's own CAM (MODELS contract)
    lo = raw.flatten(1).min(1).values[:, None, None]
    hi = raw.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(res.lowres, (raw - lo) / (hi - lo), atol=1e-5, rtol=0)
    assert res.full.shape == (2, 48, 48)
    assert [m.training for m in classifier.modules()] == training
    assert all(p.grad is None for p in classifier.parameters())


def test_fcam_map_is_fg_prob(classifier) -> None:
    fcam = models.FCAM(classifier).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    res = compute_maps(fcam, x, "fcam", [0, 2])
    with torch.no_grad():
        out = fcam(x, torch.tensor([0, 2]))
    torch.testing.assert_close(res.full, out.fg_prob)
    torch.testing.assert_close(res.logits, out.logits)
    assert res.classes.tolist() == [0, 2] and res.method == "fcam"


class _FakeOut(NamedTuple):
    logits: Tensor
    fg_prob: Tensor


class _LowResFCAM(nn.Module):
    """Stand-in with a fg_prob at half resolution, to check the resize-if-needed rule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, stride=2, padding=1)

    def forward(self, x: Tensor, classes: Tensor | None = None) -> _FakeOut:
        fg = torch.sigmoid(self.conv(x))[:, 0]
        return _FakeOut(fg.flatten(1).mean(1, keepdim=True).expand(-1, 3), fg)


def test_fcam_map_resized_when_needed() -> None:
    model = _LowResFCAM()
    x = torch.randn(1, 3, 20, 24)
    res = compute_maps(model, x, "fcam")
    with torch.no_grad():
        fg = model(x).fg_prob
    torch.testing.assert_close(res.lowres, fg)
    torch.testing.assert_close(
        res.full, nn.functional.interpolate(fg[:, None], size=(20, 24), mode="bilinear", align_corners=False)[:, 0]
    )
    assert res.classes is None
    with pytest.raises(InputError, match="fg_prob"):
        compute_maps(nn.Sequential(nn.Conv2d(3, 1, 1)), x, "fcam")
