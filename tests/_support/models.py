"""Tiny seeded models, deploy metadata, exported graphs and images with structure, shared by the runtime, export
and reliability tests (no downloads: the ResNet18-s8 demo trunk with random seeded weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.runtime.base import ModelMetadata

ARCH = "resnet18_s8"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("dot", "ring", "bar_across")
TAU = 0.35
#: Input size of the runtime tests' graphs.
RUNTIME_SIZE = (40, 40)
#: Input size of the export tests' graphs.
EXPORT_SIZE = (48, 48)


def tiny_models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(classifier, fcam) on the ResNet18-s8 demo trunk, random seeded weights, eval mode; the F-CAM head's weight
    is scaled up so the random decoder's map has contrast (random init is near 0.5 everywhere)."""
    import torch

    from fcam_deploy.models import FCAM, build_classifier

    torch.manual_seed(seed)
    clf = build_classifier(ARCH, num_classes=len(CLASS_NAMES)).eval()
    fcam = FCAM(clf).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)
    return clf, fcam


def model_metadata(
    method: str, postprocess: str, size: tuple[int, int] = RUNTIME_SIZE, max_boxes: int = 4
) -> ModelMetadata:
    """The deploy metadata of a test graph (``max_boxes`` only for ``custom-op`` graphs)."""
    from fcam_deploy.runtime.base import ModelMetadata

    return ModelMetadata(
        class_names=CLASS_NAMES,
        input_size=size,
        mean=MEAN,
        std=STD,
        tau=TAU,
        method=method,
        postprocess=postprocess,
        max_boxes=max_boxes if postprocess == "custom-op" else 0,
        arch=ARCH,
        fcam_deploy_version="test",
    )


def graph_for(
    model: torch.nn.Module, method: str, postprocess: str, size: tuple[int, int] = RUNTIME_SIZE, max_boxes: int = 4
) -> LocalizationGraph:
    from fcam_deploy.export.graph import LocalizationGraph

    return LocalizationGraph(model, method, postprocess, size, MEAN, STD, TAU, max_boxes=max_boxes)


def export_to(
    path: Path,
    model: torch.nn.Module,
    method: str,
    postprocess: str,
    size: tuple[int, int] = RUNTIME_SIZE,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` as a localization graph to ``path`` (``fcam_deploy.export.onnx_export.export_graph``)."""
    from fcam_deploy.export.onnx_export import export_graph

    export_graph(
        graph_for(model, method, postprocess, size),
        model_metadata(method, postprocess, size),
        path,
        dynamic_batch=dynamic_batch,
    )
    return path


def save_tiny_checkpoint(directory: Path, model: torch.nn.Module, size: tuple[int, int], threshold: float) -> Path:
    """An F-CAM (or classifier) checkpoint directory of a tiny model."""
    from fcam_deploy.models import FCAM
    from fcam_deploy.models.checkpoint import CheckpointMeta, save_checkpoint

    kind = "fcam" if isinstance(model, FCAM) else "classifier"
    meta = CheckpointMeta(
        arch=ARCH,
        num_classes=len(CLASS_NAMES),
        class_names=list(CLASS_NAMES),
        input_size=size,
        mean=MEAN,
        std=STD,
        threshold=threshold,
        kind=kind,
    )
    save_checkpoint(directory, model, meta)  # type: ignore[arg-type]
    return directory


def ort_ops_library() -> Path | None:
    """The built custom-op library, or None."""
    from fcam_deploy.errors import BackendUnavailableError
    from fcam_deploy.runtime.ort import resolve_ort_ops_library

    try:
        return resolve_ort_ops_library()
    except BackendUnavailableError:
        return None


def blob_image(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 (h, w, 3) RGB: a smooth background with one bright ellipse (so maps and boxes have structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img = np.empty((h, w, 3), dtype=np.float64)
    img[...] = rng.uniform(40, 120, size=3)
    img += rng.normal(0, 8, size=(h, w, 3))
    img[inside] = rng.uniform(150, 255, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def smooth_images(n: int, seed: int = 0, size: tuple[int, int] = EXPORT_SIZE) -> torch.Tensor:
    """uint8 (n, H, W, 3) images with structure (low-res noise upsampled), seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 6, 6), generator=g).float()
    up = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def tiny_onnx(
    path: Path,
    size: tuple[int, int] = RUNTIME_SIZE,
    props: dict[str, str] | None = None,
    graph_classes: int = len(CLASS_NAMES),
    weights: np.ndarray | None = None,
) -> Path:
    """A hand-built fcam-deploy model of a few hundred bytes (``postprocess=onnx`` I/O contract), for tests that
    tamper with files: logits = mean RGB @ W (3 x K), map = grey level / 255, mask = map > tau * max(map).

    Args:
        path: where to write the ``.onnx``.
        size: the graph's static (H, W).
        props: ``fcam_deploy.*`` metadata keys to override (raw strings, written as given).
        graph_classes: K of the graph's logits.
        weights: W (3, K) float32 (default: fixed values).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    meta = model_metadata("cam", "onnx", size)
    metadata = {**meta.to_props(), **{f"fcam_deploy.{k}": v for k, v in (props or {}).items()}}
    w = np.asarray(
        weights if weights is not None else np.linspace(-1, 1, 3 * graph_classes).reshape(3, -1), dtype=np.float32
    )
    h, wd = size
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "hw_axes"),
        numpy_helper.from_array(np.array([3], np.int64), "c_axis"),
        numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
        numpy_helper.from_array(np.array(TAU, np.float32), "tau"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "hw_axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["pred_class"], axis=1, keepdims=0),
        helper.make_node("ReduceMean", ["x", "c_axis"], ["grey"], keepdims=0),
        helper.make_node("Div", ["grey", "scale"], ["map"]),
        helper.make_node("ReduceMax", ["map", "hw_axes"], ["peak"], keepdims=1),
        helper.make_node("Mul", ["peak", "tau"], ["thr"]),
        helper.make_node("Greater", ["map", "thr"], ["above"]),
        helper.make_node("Cast", ["above"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fcam_model",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", h, wd, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", graph_classes]),
            helper.make_tensor_value_info("pred_class", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", h, wd]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", h, wd]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="fcam-deploy-tests")
    model.ir_version = 9
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path
