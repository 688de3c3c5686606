"""compute_maps / extractors: semantics against hand-written oracles, model-state hygiene, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fcam_deploy.cams import (
    CAM,
    GradCAM,
    ScoreCAM,
    compute_maps,
    finalize_maps,
    minmax_normalize,
    upsample_maps,
)
from fcam_deploy.errors import InputError

from ._models import make_images, make_model

HEAD_METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam"]


def _oracle_norm_up(raw: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    lo = raw.flatten(1).min(1).values[:, None, None]
    hi = raw.flatten(1).max(1).values[:, None, None]
    low = (raw - lo) / (hi - lo)
    full = nn.functional.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return low, full


# ------------------------------------------------------------------------------------------------ semantics
def test_cam_matches_protocol_oracle(model, images) -> None:
    """CAM = sum_k W[c,k] A_k, no ReLU, min-max at low res, bilinear align_corners=False (DESIGN)."""
    labels = torch.tensor([0, 3, 4])
    res = compute_maps(model, images, "cam", labels)
    with torch.no_grad():
        a = model.trunk(images)
        raw = torch.einsum("nc,nchw->nhw", model.head.weight[labels], a)
    assert bool((raw < 0).any())  # negative CAM values exist and are kept (no ReLU)
    low, full = _oracle_norm_up(raw, (32, 40))
    assert res.lowres.shape == (3, 8, 10) and res.full.shape == (3, 32, 40)
    torch.testing.assert_close(res.lowres, low, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.full, full, atol=1e-6, rtol=0)
    assert torch.equal(res.classes, labels) and res.method == "cam"
    assert float(res.full.min()) >= 0.0 and float(res.full.max()) <= 1.0


def test_predicted_classes_by_default(model, images) -> None:
    with torch.no_grad():
        pred = model(images).argmax(1)
    for method in HEAD_METHODS:
        res = compute_maps(model, images, method)
        assert torch.equal(res.classes, pred), method
        torch.testing.assert_close(res.logits, model(images).detach())


def test_structured_output_model_and_ground_truth_classes() -> None:
    """A CAMClassifier-like model (NamedTuple output with .logits) works; GT classes change the maps."""
    model = make_model(2, structured=True)
    x = make_images(n=2, seed=5)
    a = compute_maps(model, x, "gradcam", [0, 0])
    b = compute_maps(model, x, "gradcam", [1, 1])
    assert a.classes.tolist() == [0, 0] and b.classes.tolist() == [1, 1]
    assert not torch.allclose(a.lowres, b.lowres)


def test_autograd_on_intermediate_layer_matches_manual_gradient() -> None:
    """Any target layer: GradCAM on the first conv block, g computed by hand through the rest of the net."""
    model = make_model(4, dtype=torch.float64)
    x = make_images(n=2, seed=7, dtype=torch.float64)
    cls = torch.tensor([1, 2])
    a = model.trunk[:3](x).detach().requires_grad_(True)
    logits = model.head(model.trunk[3:](a).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), a)
    raw = torch.relu(torch.einsum("nc,nchw->nhw", g.mean(dim=(2, 3)), a.detach()))
    res = compute_maps(model, x, "gradcam", cls, target_layer="trunk.2")
    low, full = _oracle_norm_up(raw, (32, 40))
    torch.testing.assert_close(res.lowres, low)
    torch.testing.assert_close(res.full, full)
    assert res.lowres.shape == (2, 16, 20)


def test_closed_form_refused_where_it_does_not_apply() -> None:
    model = make_model(0)
    x = make_images(n=2)
    with pytest.raises(InputError, match="closed form does not apply"):
        compute_maps(model, x, "gradcam", target_layer="trunk.4", impl="closed_form")  # BN before the ReLU
    # auto falls back to autograd for a non-CAM layer and still gives a map
    res = compute_maps(model, x, "layercam", target_layer="trunk.4", head="head")
    assert res.lowres.shape == (2, 8, 10)
    ag = compute_maps(model, x, "layercam", target_layer="trunk.4", impl="autograd")
    torch.testing.assert_close(res.lowres, ag.lowres)


def test_scorecam_matches_oracle_and_is_batch_size_invariant(model, images) -> None:
    cls = torch.tensor([1, 2, 3])
    with torch.no_grad():
        a = model.trunk(images)
        raw = []
        for i in range(3):
            scores = []
            for k in range(a.shape[1]):
                m = nn.functional.interpolate(
                    a[i : i + 1, k : k + 1], size=(32, 40), mode="bilinear", align_corners=True
                )[0, 0]
                m = (m - m.min()) / (m.max() - m.min() + 1e-8)
                scores.append(model(images[i : i + 1] * m)[0, cls[i]])
            w = torch.softmax(torch.stack(scores), 0)
            raw.append(torch.relu((w[:, None, None] * a[i]).sum(0)))
        raw = torch.stack(raw)
    low, _ = _oracle_norm_up(raw, (32, 40))
    r1 = compute_maps(model, images, "scorecam", cls, batch_size=1)
    r16 = compute_maps(model, images, "scorecam", cls)
    torch.testing.assert_close(r1.lowres, low, atol=1e-5, rtol=0)
    torch.testing.assert_close(r16.lowres, r1.lowres, atol=1e-5, rtol=0)


def test_results_on_model_device_and_dtype() -> None:
    model = make_model(0, dtype=torch.float64)
    x = make_images(n=1)  # float32 images are cast to the model's dtype
    for method in HEAD_METHODS:
        res = compute_maps(model, x, method)
        assert res.lowres.dtype == torch.float64 and res.full.device == torch.device("cpu")
        assert not res.full.requires_grad and not res.lowres.requires_grad


# ----------------------------------------------------------------------------------------- normalise/resize
def test_minmax_nan_and_constant_maps_become_zero() -> None:
    maps = torch.stack([torch.full((4, 5), 3.0), torch.rand(4, 5), torch.rand(4, 5)])
    maps[2, 1, 1] = float("nan")
    before = maps.clone()
    out = minmax_normalize(maps)
    assert torch.equal(out[0], torch.zeros(4, 5)) and torch.equal(out[2], torch.zeros(4, 5))
    assert float(out[1].min()) == 0.0 and float(out[1].max()) == 1.0
    assert torch.equal(maps.isnan(), before.isnan()) and torch.equal(maps.nan_to_num(), before.nan_to_num())


def test_bicubic_cv2_matches_wsolevaluation_order() -> None:
    """wsolevaluation: cv2.resize(cam, INTER_CUBIC) then min-max (overshoot normalised away)."""
    cv2 = pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 7, 7, generator=g)
    low, full = finalize_maps(raw, (224, 224), upsample="bicubic_cv2")
    for i in range(2):
        ref = cv2.resize(raw[i].numpy(), (224, 224), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        assert np.abs(full[i].numpy() - ref).max() < 1e-6
    lin = finalize_maps(raw, (224, 224))[1]
    assert float((lin - full).abs().max()) > 1e-3  # the two options really differ
    torch.testing.assert_close(low, minmax_normalize(raw))


def test_bilinear_equals_cv2_inter_linear() -> None:
    cv2 = pytest.importorskip("cv2")
    m = torch.rand(1, 7, 9, generator=torch.Generator().manual_seed(1))
    ours = upsample_maps(m, (56, 72))[0].numpy()
    ref = cv2.resize(m[0].numpy(), (72, 56), interpolation=cv2.INTER_LINEAR)
    assert np.abs(ours - ref).max() < 1e-5


# ---------------------------------------------------------------------------------------- state hygiene
def _snapshot(model: nn.Module) -> tuple:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _assert_same_state(model: nn.Module, snap: tuple) -> None:
    training, req, grads, sd = snap
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == req
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k  # BN running stats untouched (eval during the call)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


@pytest.mark.parametrize("method", HEAD_METHODS)
@pytest.mark.parametrize("impl", ["closed_form", "autograd"])
def test_model_state_restored_exactly(method: str, impl: str, images: Tensor) -> None:
    model = make_model(0)
    model.train()
    model.trunk[1].eval()  # a mixed training-flag pattern
    model.trunk[0].weight.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)  # a caller's pending grad
    snap = _snapshot(model)
    kw = {} if method == "scorecam" else {"impl": impl}
    res = compute_maps(model, images, method, [0, 1, 2], **kw)
    _assert_same_state(model, snap)
    # eval mode was used: dropout off -> maps equal those of the eval-mode model
    ref = compute_maps(make_model(0), images, method, [0, 1, 2], **kw)
    torch.testing.assert_close(res.lowres, ref.lowres)


def test_works_under_no_grad_and_on_frozen_models(images) -> None:
    model = make_model(0)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        res = compute_maps(model, images, "gradcampp", impl="autograd", target_layer="trunk.2")
    assert res.lowres.shape == (3, 16, 20) and float(res.lowres.max()) > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


class _Boom(RuntimeError):
    pass


def test_hooks_removed_and_state_restored_when_model_raises(images) -> None:
    model = make_model(0)
    model.train()

    def explode(*_: object) -> None:
        raise _Boom("head failed")

    handle = model.head.register_forward_pre_hook(explode)
    snap_training = [m.training for m in model.modules()]
    for method in ("gradcam", "cam", "scorecam"):
        with pytest.raises(_Boom):
            compute_maps(model, images, method)
        assert not model.trunk._forward_hooks
        assert [m.training for m in model.modules()] == snap_training
    handle.remove()


def test_context_manager_removes_hooks_and_propagates_errors(model, images) -> None:
    with pytest.raises(ValueError, match="user error"), GradCAM(model, model.trunk) as ex:
        ex(images)
        raise ValueError("user error")
    assert not model.trunk._forward_hooks
    # the extractor does not interfere with the caller's own forward passes inside the block
    with CAM(model) as ex:
        a = model(images)
        b = ex(images)
        assert not model.trunk._forward_hooks
        torch.testing.assert_close(model(images), a)
        assert b.lowres.shape == (3, 8, 10)


def test_layer_given_as_module_or_name_agree(model, images) -> None:
    a = GradCAM(model, model.trunk[5], impl="autograd")(images, 1)
    b = GradCAM(model, "trunk.5", impl="autograd")(images, 1)
    torch.testing.assert_close(a.full, b.full)


# -------------------------------------------------------------------------------------------------- errors
def test_typed_errors(model, images) -> None:
    with pytest.raises(InputError, match="not a module"):
        compute_maps(model, images, "gradcam", target_layer="trunk.99")
    with pytest.raises(InputError, match="not a submodule"):
        compute_maps(model, images, "gradcam", target_layer=nn.Conv2d(3, 3, 1))
    with pytest.raises(InputError, match="unknown CAM method"):
        compute_maps(model, images, "gradcam+")
    with pytest.raises(InputError, match=r"shape \(3,\)"):
        compute_maps(model, images, "cam", torch.tensor([1, 2]))
    with pytest.raises(InputError, match="lie in"):
        compute_maps(model, images, "cam", [0, 1, 9])
    with pytest.raises(InputError, match="integer"):
        compute_maps(model, images, "cam", torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        compute_maps(model, images[0], "cam")
    with pytest.raises(InputError, match="NaN"):
        compute_maps(model, images * float("nan"), "cam")
    with pytest.raises(InputError, match="upsample"):
        compute_maps(model, images, "cam", upsample="nearest")
    with pytest.raises(InputError, match="prototypes"):
        compute_maps(model, images, "lpcam")
    with pytest.raises(InputError, match="batch_size"):
        ScoreCAM(model, batch_size=0)
    model.unused = nn.Identity()  # registered but never called in forward
    with pytest.raises(InputError, match="did not run"):
        compute_maps(model, images, "gradcam", target_layer="unused")
    assert not model.unused._forward_hooks
