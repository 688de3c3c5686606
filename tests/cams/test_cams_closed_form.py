"""Forward-only closed forms == autograd (docs/protocol.md §4.4), and the heads export to ONNX."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from fcam_deploy.cams import CLOSED_FORM_HEADS, compute_maps
from fcam_deploy.cams.gradient import GRADIENT_FORMULAS

from ._models import make_images, make_model

GRAD_METHODS = ["gradcam", "gradcampp", "xgradcam", "layercam"]


def _autograd_oracle(model, x: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
    """A and g = d(sum_n y_{n,c_n})/dA computed by hand on the model's own modules (no hooks)."""
    a = model.trunk(x).detach().requires_grad_(True)
    logits = model.head(a.mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), a)
    return a.detach(), g


@pytest.mark.parametrize("method", GRAD_METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_autograd_every_class(method: str, seed: int) -> None:
    model = make_model(seed, dtype=torch.float64, num_classes=6)
    x = make_images(n=4, seed=seed + 10, dtype=torch.float64)
    head = CLOSED_FORM_HEADS[method]()
    for c in range(6):
        classes = torch.tensor([c, (c + 1) % 6, (c + 3) % 6, c])  # several classes in one batch
        a, g = _autograd_oracle(model, x, classes)
        # the premise of §4.4: the gradient is spatially constant W[c,k]/(h w)
        hw = a.shape[-2] * a.shape[-1]
        torch.testing.assert_close(g, (model.head.weight[classes] / hw)[:, :, None, None].expand_as(g))
        expect = GRADIENT_FORMULAS[method](a, g)
        got = head(a, model.head.weight.detach(), classes)
        assert got.shape == (4, a.shape[-2], a.shape[-1])
        assert float((got - expect).abs().max()) <= 1e-5 * max(1.0, float(expect.abs().max()))
        assert float(expect.abs().max()) > 0  # a non-vacuous comparison


@pytest.mark.parametrize("method", GRAD_METHODS)
def test_extractor_closed_form_equals_autograd_float32(method: str) -> None:
    model = make_model(3, num_classes=5)
    x = make_images(n=3, seed=4)
    for classes in (None, torch.tensor([4, 0, 2])):
        cf = compute_maps(model, x, method, classes, impl="closed_form")
        ag = compute_maps(model, x, method, classes, impl="autograd")
        assert torch.equal(cf.classes, ag.classes)
        assert float((cf.lowres - ag.lowres).abs().max()) < 1e-5
        assert float((cf.full - ag.full).abs().max()) < 1e-5


def test_gradcam_closed_form_is_relu_cam() -> None:
    """GradCAM with a GAP->linear head is ReLU(CAM)/(hw): normalised, it equals the normalised ReLU(CAM)."""
    model = make_model(5, dtype=torch.float64)
    x = make_images(n=2, seed=6, dtype=torch.float64)
    a = model.trunk(x).detach()
    cls = torch.tensor([1, 3])
    cam = torch.einsum("nc,nchw->nhw", model.head.weight.detach()[cls], a)
    raw = CLOSED_FORM_HEADS["gradcam"]()(a, model.head.weight.detach(), cls)
    torch.testing.assert_close(raw, torch.relu(cam) / (a.shape[-2] * a.shape[-1]))


def test_gradcampp_closed_form_handles_zero_and_negative_weights() -> None:
    """alpha is 0 where the gradient is 0 and ReLU(g) kills negative weights; raw signed activations too."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 7, 5, 6, generator=g, dtype=torch.float64)  # signed: S_k may be negative
    w = torch.randn(3, 7, generator=g, dtype=torch.float64)
    w[1, :3] = 0.0
    cls = torch.tensor([1, 2])
    grad = (w[cls] / 30.0)[:, :, None, None].expand_as(a).contiguous()
    expect = GRADIENT_FORMULAS["gradcampp"](a, grad)
    got = CLOSED_FORM_HEADS["gradcampp"]()(a, w, cls)
    torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-12)


def test_heads_do_not_modify_inputs() -> None:
    model = make_model(0)
    a = model.trunk(make_images(n=2)).detach()
    w = model.head.weight.detach().clone()
    a0, w0 = a.clone(), w.clone()
    for head in CLOSED_FORM_HEADS.values():
        head(normalize=True)(a, w, torch.tensor([0, 1]))
    assert torch.equal(a, a0) and torch.equal(w, w0)


@pytest.mark.ort
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_heads_export_to_onnx_and_match(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = make_model(1)
    a = model.trunk(make_images(n=2, seed=3)).detach()
    w = model.head.weight.detach()
    cls = torch.tensor([2, 0])
    for name, cls_head in CLOSED_FORM_HEADS.items():
        head = cls_head(normalize=True)
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(
            head,
            (a, w, cls),
            str(path),
            input_names=["A", "W", "classes"],
            output_names=["maps"],
            dynamo=False,
            opset_version=17,
        )
        onnx.checker.check_model(onnx.load(str(path)))
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert not ops & {"Loop", "If", "ATen"}, ops
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {"A": a.numpy(), "W": w.numpy(), "classes": cls.numpy()})
        expect = head(a, w, cls).numpy()
        assert abs(got - expect).max() < 1e-5, name


@pytest.mark.ort
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_closed_form_cam_module_exports_with_and_without_classes(tmp_path) -> None:
    """Classifier + head as one ONNX graph: logits and maps equal compute_maps (closed form) and autograd."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fcam_deploy.cams import ClosedFormCAM, fit_lpcam

    model = make_model(2, num_classes=4)
    x = make_images(n=2, seed=8)
    cls = torch.tensor([3, 1])
    protos = fit_lpcam(model, [(make_images(n=4, seed=20), torch.tensor([0, 1, 2, 3]))], num_clusters=3)
    for method in ("gradcampp", "lpcam"):
        mod = ClosedFormCAM(model, method, prototypes=protos).eval()
        for with_cls in (True, False):
            path = tmp_path / f"{method}_{with_cls}.onnx"
            args = (x, cls) if with_cls else (x,)
            names = ["x", "classes"] if with_cls else ["x"]
            torch.onnx.export(
                mod, args, str(path), input_names=names, output_names=["logits", "maps"], dynamo=False, opset_version=17
            )
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {"x": x.numpy(), **({"classes": cls.numpy()} if with_cls else {})}
            logits, maps = sess.run(None, feeds)
            kw = {"prototypes": protos} if method == "lpcam" else {"impl": "autograd"}
            ref = compute_maps(model, x, method, cls if with_cls else None, **kw)
            assert abs(logits - ref.logits.numpy()).max() < 1e-5
            assert abs(maps - ref.lowres.numpy()).max() < 1e-5, (method, with_cls)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    given = None

if given is not None:

    @settings(max_examples=25, deadline=None)
    @given(
        n=st.integers(1, 3),
        c=st.integers(1, 9),
        h=st.integers(1, 6),
        w=st.integers(1, 6),
        k=st.integers(1, 5),
        seed=st.integers(0, 2**31 - 1),
        method=st.sampled_from(GRAD_METHODS),
    )
    def test_closed_form_equals_autograd_property(n, c, h, w, k, seed, method) -> None:
        """Random shapes, signed activations, any classes: the head equals the general formula fed with the
        autograd gradient of a GAP -> Linear score (float64)."""
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).requires_grad_(True)
        lin = torch.nn.Linear(c, k).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(k, c, generator=g, dtype=torch.float64))
        cls = torch.randint(0, k, (n,), generator=g)
        (grad,) = torch.autograd.grad(lin(a.mean(dim=(2, 3))).gather(1, cls[:, None]).sum(), a)
        expect = GRADIENT_FORMULAS[method](a.detach(), grad)
        got = CLOSED_FORM_HEADS[method]()(a.detach(), lin.weight.detach(), cls)
        torch.testing.assert_close(got, expect, rtol=1e-7, atol=1e-9)
