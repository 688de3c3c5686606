"""Parity with the PyPI ``grad-cam`` package (pytorch_grad_cam): same model, same inputs, same maps after its
normalisation (``scale_cam_image`` twice, eps 1e-7) and resize (cv2 INTER_LINEAR). Skips without the package."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fcam_deploy.cams import compute_maps

from ._models import make_images, make_model

gc = pytest.importorskip("pytorch_grad_cam", reason="the grad-cam package is not installed")

PACKAGE_CLASSES = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}
TOL = 2e-5


def package_maps(model, layer_name: str, method: str, x: torch.Tensor, classes: list[int] | None) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = copy.deepcopy(model)  # the package calls model.eval() and leaves .grad on the parameters
    layer = dict(m.named_modules())[layer_name]
    cls = getattr(gc, PACKAGE_CLASSES[method])
    targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    with cls(model=m, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=targets)


def max_diff(method: str, layer: str, classes: list[int] | None, seed: int = 0) -> float:
    model = make_model(seed, num_classes=5)
    x = make_images(n=2, h=32, w=40, seed=seed + 1)
    ref = package_maps(model, layer, method, x, classes)
    ours = compute_maps(model, x, method, classes, target_layer=layer, normalize="gradcam")
    assert ours.full.shape == ref.shape
    return float(np.abs(ours.full.numpy() - ref).max())


@pytest.mark.parametrize("method", list(PACKAGE_CLASSES))
@pytest.mark.parametrize("classes", [None, [3, 1]])
def test_parity_cam_layer(method: str, classes: list[int] | None) -> None:
    """Target layer feeding GAP -> Linear: closed forms (gradient methods) vs the package's autograd."""
    assert max_diff(method, "trunk", classes) < TOL


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "layercam"])
def test_parity_intermediate_layer(method: str) -> None:
    """Any layer: our autograd path vs the package on the first block's ReLU (spatially varying gradients)."""
    assert max_diff(method, "trunk.2", [0, 4]) < TOL


def test_protocol_normalisation_differs_from_package() -> None:
    """Sanity: the parity above is not vacuous: the default protocol normalisation (no renormalisation after
    the resize, no eps) gives different numbers from the package's on the same maps."""
    model = make_model(0)
    x = make_images(n=2, seed=1)
    ref = package_maps(model, "trunk.2", "gradcam", x, [0, 4])
    ours = compute_maps(model, x, "gradcam", [0, 4], target_layer="trunk.2")
    assert np.abs(ours.full.numpy() - ref).max() > TOL
