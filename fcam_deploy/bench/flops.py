"""Multiply-accumulate counts, two independent ways.

* :func:`count_torch_macs` runs the model under :class:`torch.utils.flop_counter.FlopCounterMode` (which counts
  2 FLOPs per multiply-accumulate of convolutions and matrix products, forward and backward).
* :func:`count_onnx_macs` walks an ONNX graph after shape inference and counts the same operator family
  (Conv, ConvTranspose, Gemm, MatMul) from the static shapes alone, without running anything.

Both count only convolutions and matrix products: element-wise ops, pooling and resizing are excluded on both
sides, so the two numbers are comparable (the benchmark checks they agree within 2 %).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fcam_deploy.errors import InputError, ModelFormatError

__all__ = ["count_onnx_macs", "count_parameters", "count_torch_macs"]


def count_torch_macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates performed by ``fn()`` (forward and, if ``fn`` calls it, backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops()) // 2


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _dims(value_info: Any) -> list[int]:
    shape = value_info.type.tensor_type.shape
    dims = []
    for d in shape.dim:
        if not d.HasField("dim_value"):
            raise InputError(f"ONNX value {value_info.name!r} has a symbolic dimension; pass input_shapes")
        dims.append(int(d.dim_value))
    return dims


def _shapes_by_running(model: Any, names: list[str], input_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Shapes of intermediate values that static inference could not resolve (a Reshape fed by Shape ops, say):
    expose them as graph outputs and run the graph once on zeros with ONNX Runtime."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {}
    for inp in sess.get_inputs():
        if inp.name not in input_shapes:
            raise InputError(f"input {inp.name!r} needs a concrete shape in input_shapes")
        dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int64)": np.int64}.get(inp.type)
        if dtype is None:
            raise InputError(f"input {inp.name!r} has unsupported type {inp.type} for shape probing")
        feed[inp.name] = np.zeros(input_shapes[inp.name], dtype=dtype)
    outs = sess.run(names, feed)
    return {n: list(o.shape) for n, o in zip(names, outs)}


def count_onnx_macs(model_path: str | Path, input_shapes: dict[str, list[int]] | None = None) -> int:
    """Multiply-accumulates of one run of an ONNX graph, from its inferred static shapes.

    Args:
        model_path: the .onnx file.
        input_shapes: concrete shapes for graph inputs with symbolic dims (e.g. ``{"images": [1, 3, 224, 224]}``).

    Raises:
        ModelFormatError: the file is not a loadable ONNX model.
        InputError: a shape needed for counting is symbolic or unknown.
    """
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # onnx raises DecodeError/ValueError variants: report them all as one typed error
        raise ModelFormatError(f"{model_path}: not a loadable ONNX model ({exc})") from exc
    for inp in model.graph.input:
        if input_shapes and inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            wanted = input_shapes[inp.name]
            if len(dims) != len(wanted):
                raise InputError(f"input {inp.name!r} has rank {len(dims)}, got shape {wanted}")
            for d, v in zip(dims, wanted):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        try:
            shapes[vi.name] = _dims(vi)
        except InputError:
            continue
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)

    counted = ("Conv", "ConvTranspose", "Gemm", "MatMul")
    needed = {t for n in inferred.graph.node if n.op_type in counted for t in list(n.input[:2]) + [n.output[0]]}
    missing = sorted(t for t in needed if t and t not in shapes)
    if missing:
        shapes.update(_shapes_by_running(model, missing, input_shapes or {}))

    def shape_of(name: str) -> list[int]:
        if name not in shapes:
            raise InputError(f"ONNX value {name!r} has no static shape after inference; pass input_shapes")
        return shapes[name]

    total = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shape_of(node.input[1])  # its second dimension already is channels / group
            if node.op_type == "Conv":
                out = shape_of(node.output[0])
                # w: (Cout, Cin/group, k...) ; every output element costs Cin/group * prod(k) MACs
                k = 1
                for v in w[1:]:
                    k *= v
                n_out = 1
                for v in out:
                    n_out *= v
                total += n_out * k
            else:
                x = shape_of(node.input[0])
                # w: (Cin, Cout/group, k...) ; every input element is scattered to Cout/group * prod(k) outputs
                k = 1
                for v in w[1:]:
                    k *= v
                n_in = 1
                for v in x:
                    n_in *= v
                total += n_in * k
        elif node.op_type == "Gemm":
            b = shape_of(node.input[1])
            out = shape_of(node.output[0])
            trans_b = next((x.i for x in node.attribute if x.name == "transB"), 0)
            k = b[1] if trans_b else b[0]
            total += out[0] * out[1] * k
        elif node.op_type == "MatMul":
            out = shape_of(node.output[0])
            # K from whichever operand has a static shape (a Reshape fed by Shape ops can hide one of them)
            k = shapes[node.input[0]][-1] if node.input[0] in shapes else shape_of(node.input[1])[-2]
            n_out = 1
            for v in out:
                n_out *= v
            total += n_out * k
    return total
