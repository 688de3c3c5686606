"""A small random-weight graph with the fcam I/O contract (``fcam doctor``'s TensorRT probe, and the tests)."""

from __future__ import annotations

import os
from pathlib import Path

from fcam_deploy._io import atomic_write_bytes

__all__ = ["write_probe_onnx"]


def write_probe_onnx(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (32, 32),
    num_classes: int = 3,
    channels: int = 8,
    tau: float = 0.5,
    seed: int = 0,
    opset: int = 18,
) -> Path:
    """Write a small random-weight graph with the fcam I/O contract, built with ``onnx.helper`` only.

    Input ``images`` uint8 (N, H, W, 3) with a dynamic batch; normalisation inside; a 3x3 conv + ReLU feature map
    A (C channels); ``logits`` = linear head on GAP(A); ``pred_class`` = argmax; ``map`` = the CAM of the predicted
    class (sum_k W[c, k] A_k), min-max normalised per image to [0, 1]; ``mask`` = ``map >= tau`` as uint8. The
    metadata is a valid :class:`~fcam_deploy.runtime.base.ModelMetadata` (method ``cam``, post-process ``onnx``), so
    every runtime and ``fcam build-engine`` accept it. Standard ONNX ops only (TensorRT and ORT run it natively).

    Returns:
        ``Path(path)``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fcam_deploy import __version__
    from fcam_deploy.runtime.base import ModelMetadata

    rng = np.random.default_rng(seed)
    h, w = size
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    conv_w = rng.normal(0.0, 0.5, (channels, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0.0, 0.1, (channels,)).astype(np.float32)
    head_w = rng.normal(0.0, 1.0, (num_classes, channels)).astype(np.float32)
    head_b = rng.normal(0.0, 0.1, (num_classes,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(conv_w, "conv_w"),
        numpy_helper.from_array(conv_b, "conv_b"),
        numpy_helper.from_array(head_w.T.copy(), "head_wt"),
        numpy_helper.from_array(head_b, "head_b"),
        numpy_helper.from_array(head_w, "head_w"),
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1) * 255.0, "mean255"),
        numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1) * 255.0, "std255"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
        numpy_helper.from_array(np.array(tau, np.float32), "tau"),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        n("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        n("Sub", ["x_nchw", "mean255"], ["x_c"]),
        n("Div", ["x_c", "std255"], ["x_n"]),
        n("Conv", ["x_n", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Relu", ["conv"], ["feat"]),
        n("ReduceMean", ["feat", "hw_axes"], ["gap4"], keepdims=0),
        n("MatMul", ["gap4", "head_wt"], ["lin"]),
        n("Add", ["lin", "head_b"], ["logits"]),
        n("ArgMax", ["logits"], ["pred_class"], axis=1, keepdims=0),
        n("Gather", ["head_w", "pred_class"], ["w_sel"], axis=0),  # (N, C)
        n("Unsqueeze", ["w_sel", "hw_axes"], ["w_sel4"]),  # (N, C, 1, 1)
        n("Mul", ["feat", "w_sel4"], ["weighted"]),
        n("ReduceSum", ["weighted", "ax1"], ["cam"], keepdims=0),  # (N, H, W)
        n("ReduceMin", ["cam", "ax12"], ["cmin"], keepdims=1),
        n("ReduceMax", ["cam", "ax12"], ["cmax"], keepdims=1),
        n("Sub", ["cam", "cmin"], ["num"]),
        n("Sub", ["cmax", "cmin"], ["rng"]),
        n("Max", ["rng", "eps"], ["den"]),
        n("Div", ["num", "den"], ["map"]),
        n("GreaterOrEqual", ["map", "tau"], ["mask_b"]),
        n("Cast", ["mask_b"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "fcam_probe",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", h, w, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes]),
            helper.make_tensor_value_info("pred_class", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", h, w]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", h, w]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fcam-deploy")
    model.ir_version = 8
    meta = ModelMetadata(
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
        input_size=(h, w),
        mean=mean,
        std=std,
        tau=tau,
        method="cam",
        postprocess="onnx",
        arch="probe",
        fcam_deploy_version=__version__,
        opset=opset,
        dynamic_batch=True,
    )
    onnx.helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model, full_check=True)
    out = Path(path)
    atomic_write_bytes(out, model.SerializeToString())
    return out
