"""Average Drop / Increase in Confidence and ROAD against the ``grad-cam`` package's implementations
(``pytorch_grad_cam.metrics``) on the same model, images and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fcam_deploy.errors import InputError
from fcam_deploy.metrics.faithfulness import (
    ROADResult,
    confidence_change,
    noisy_linear_impute,
    road,
    road_keep_mask,
)

pgc = pytest.importorskip("pytorch_grad_cam", reason="the grad-cam package (reference) is not installed")
from pytorch_grad_cam.metrics.cam_mult_image import (
    DropInConfidence,
    IncreaseInConfidence,
)
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

H, W = 20, 26


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    return m.eval()


def _data(n: int = 4) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, H, W, generator=g)
    yy, xx = np.mgrid[0:H, 0:W]
    maps = np.stack([np.exp(-((yy - 4 - 3 * i) ** 2 + (xx - 6 - 4 * i) ** 2) / (2 * (3 + i) ** 2)) for i in range(n)])
    maps = ((maps - maps.min((1, 2), keepdims=True)) / np.ptp(maps, axis=(1, 2), keepdims=True)).astype(np.float32)
    maps[0, :5, :5] = 0.0  # ties at the bottom of one map
    return x, maps, torch.tensor([0, 3, 1, 4])[:n]


@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_drop_and_increase_match_the_package(score: str) -> None:
    model = _model()
    x, maps, cls = _data()
    res = confidence_change(model, x, torch.from_numpy(maps), cls, score=score)  # type: ignore[arg-type]
    target = ClassifierOutputSoftmaxTarget if score == "softmax" else ClassifierOutputTarget
    targets = [target(int(c)) for c in cls]
    pkg_drop = DropInConfidence()(x, maps, targets, model)
    pkg_inc = IncreaseInConfidence()(x, maps, targets, model)
    np.testing.assert_allclose(res.absolute_drop, pkg_drop, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(res.increase, pkg_inc)
    if score == "softmax":
        assert res.average_drop == pytest.approx(100 * np.mean(pkg_drop / res.before), rel=1e-5)
        assert res.increase_in_confidence == pytest.approx(100 * np.mean(pkg_inc))
        assert 0 <= res.average_drop <= 100
    elif np.any(res.before <= 0):
        with pytest.raises(InputError, match="positive"):
            _ = res.average_drop


def test_imputation_matches_the_package_and_adds_seeded_noise() -> None:
    x, maps, _ = _data(2)
    for order, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        for p in (10, 50, 90):
            keep = road_keep_mask(maps[0], p, order)  # type: ignore[arg-type]
            ref = remover(p, NoisyLinearImputer(noise=0.0))(x[0], torch.from_numpy(maps[0]))
            ours = noisy_linear_impute(x[0], keep, noise=0.0)
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
            assert torch.equal(ours[:, torch.from_numpy(keep)], x[0][:, torch.from_numpy(keep)])
    keep = road_keep_mask(maps[1], 30, "morf")
    clean = noisy_linear_impute(x[1], keep, noise=0.0)
    a = noisy_linear_impute(x[1], keep, noise=0.5, generator=torch.Generator().manual_seed(3))
    b = noisy_linear_impute(x[1], keep, noise=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    d = (a - clean)[:, torch.from_numpy(~keep)]
    assert torch.equal((a - clean)[:, torch.from_numpy(keep)], torch.zeros(3, int(keep.sum())))
    assert 0.35 < float(d.std()) < 0.65 and abs(float(d.mean())) < 0.15


def test_road_matches_the_package_without_noise() -> None:
    model = _model()
    x, maps, cls = _data()
    pcts = (10, 40, 70, 90)
    res = road(model, x, maps, cls, percentiles=pcts, noise=0.0)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in cls]
    for j, p in enumerate(pcts):
        morf = PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, NoisyLinearImputer(noise=0.0)))
        lerf = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, NoisyLinearImputer(noise=0.0)))
        np.testing.assert_allclose(res.morf[j] - res.before, morf(x, maps, targets, model), atol=2e-6)
        np.testing.assert_allclose(res.lerf[j] - res.before, lerf(x, maps, targets, model), atol=2e-6)
    # the package's ROADCombined formula on these parts
    expect = ((res.lerf - res.before).mean(0) - (res.morf - res.before).mean(0)) / 2
    np.testing.assert_allclose(res.combined_per_image, expect)
    assert res.combined == pytest.approx(float(expect.mean()))
    assert res.morf_change.shape == (4,)


def test_road_noise_is_reproducible_and_degenerate_maps_are_defined() -> None:
    model = _model()
    x, maps, cls = _data(2)
    a = road(model, x, maps, cls, percentiles=(50,), seed=4)
    b = road(model, x, maps, cls, percentiles=(50,), seed=4, workers=2, batch_size=3)
    assert isinstance(a, ROADResult) and np.array_equal(a.morf, b.morf) and np.array_equal(a.lerf, b.lerf)
    flat = np.zeros_like(maps)  # every value ties: MoRF keeps nothing, LeRF keeps nothing
    res = road(model, x, flat, cls, percentiles=(50,), noise=0.0)
    np.testing.assert_allclose(res.morf[0], res.lerf[0])
    zero = torch.zeros_like(x)
    np.testing.assert_allclose(res.morf[0], torch.softmax(model(zero), 1)[[0, 1], cls].detach().numpy(), rtol=1e-5)


def test_input_errors() -> None:
    model = _model()
    x, maps, cls = _data(2)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        confidence_change(model, x, maps * 2, cls)
    with pytest.raises(InputError, match="maps must be"):
        road(model, x, maps[:, :5], cls)
    with pytest.raises(InputError, match="one entry per image"):
        confidence_change(model, x, maps, cls[:1])
    with pytest.raises(InputError, match="percentiles"):
        road(model, x, maps, cls, percentiles=(120,))
    with pytest.raises(InputError, match="score"):
        confidence_change(model, x, maps, cls, score="prob")  # type: ignore[arg-type]
