"""Models and images for the aarch64 check (export/cpp/cross/aarch64.sh, `make aarch64`).

    python export/cpp/cross/demo_model.py OUT_DIR [--no-demo]
        -> OUT_DIR/exact_arith.onnx, OUT_DIR/demo_like.onnx, OUT_DIR/img*.{png,jpg}

* ``demo_like.onnx``: the demo's architecture (F-CAM on the EfficientNet-Lite0 stride-8 trunk, 96x96 input,
  3 classes, ``--postprocess onnx``), random weights from a fixed seed, exported by the real exporter (needs the
  ``train`` extra: torch, timm). Its convolutions run in ONNX Runtime's MLAS kernels, which accumulate in another
  order on NEON than on AVX, so x86-64 and aarch64 agree to ~1e-7, not bit for bit.
* ``exact_arith.onnx``: the same I/O contract and metadata (64x64, 3 classes, method ``cam``), written with
  ``onnx.helper``, whose arithmetic is exact on any CPU: ``map`` = (R + G + B) / 765 per pixel, ``logits`` = channel
  sums / 261120 (sums of integers below 2^24 are exact in any order; each division is rounded once, per IEEE 754).
  Everything the C++ library does around the graph (decoding, resize, post-processing, softmax) must then give the
  same bytes on both CPUs.
* images: down- and up-scaling, both resize pass orders, gray, a JPEG.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_exact_model(path: Path) -> Path:
    """The exact-arithmetic graph described above (standard ONNX ops, opset 18, dynamic batch)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fcam_deploy.runtime.base import ModelMetadata

    h = w = 64
    inits = [
        numpy_helper.from_array(np.array([3], np.int64), "ax_c"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax_hw"),
        numpy_helper.from_array(np.array(765.0, np.float32), "c765"),
        numpy_helper.from_array(np.array(255.0 * h * w / 4, np.float32), "cnorm"),
        numpy_helper.from_array(np.array(0.5, np.float32), "tau"),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        n("ReduceSum", ["x", "ax_c"], ["s"], keepdims=0),  # (N, H, W) integers <= 765
        n("Div", ["s", "c765"], ["map"]),
        n("ReduceSum", ["x", "ax_hw"], ["sums"], keepdims=0),  # (N, 3) integers < 2^24
        n("Div", ["sums", "cnorm"], ["logits"]),
        n("ArgMax", ["logits"], ["pred_class"], axis=1, keepdims=0),
        n("ReduceMax", ["map", "ax_hw"], ["mx"], keepdims=1),
        n("Mul", ["mx", "tau"], ["thr"]),
        n("Greater", ["map", "thr"], ["mask_b"]),
        n("Cast", ["mask_b"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "fcam_exact_arith",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", h, w, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("pred_class", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", h, w]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", h, w]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = ModelMetadata(
        class_names=("red", "green", "blue"),
        input_size=(h, w),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        tau=0.5,
        method="cam",
        postprocess="onnx",
        opset=18,
    )
    for k, v in meta.to_props().items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def main(out: Path, demo: bool = True) -> None:
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    print(write_exact_model(out / "exact_arith.onnx"))
    if demo:
        print(write_demo_model(out / "demo_like.onnx"))
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(375, 500), (96, 96), (240, 60), (50, 77)]):
        yy, xx = np.mgrid[0:h, 0:w]
        img = (
            np.stack(
                [
                    128 + 100 * np.sin(xx / 9 + i),
                    128 + 100 * np.cos(yy / 7 + i),
                    rng.integers(0, 256, (h, w)),
                ],
                -1,
            )
            .clip(0, 255)
            .astype(np.uint8)
        )
        Image.fromarray(img).save(out / f"img{i}.png")
    Image.fromarray(img).convert("L").save(out / "img_gray.png")
    Image.open(out / "img0.png").save(out / "img0.jpg", quality=90)


def write_demo_model(path: Path) -> Path:
    """The demo-architecture export described above (random weights, seed 0)."""
    import torch

    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.export.onnx_export import export_graph
    from fcam_deploy.models import FCAM, build_classifier
    from fcam_deploy.runtime.base import ModelMetadata

    torch.manual_seed(0)
    fcam = FCAM(build_classifier("efficientnet_lite0_s8", num_classes=3)).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)  # give the random decoder's map some structure
    mean, std, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (96, 96)
    meta = ModelMetadata(
        class_names=("cat", "dog", "bird"),
        input_size=size,
        mean=mean,
        std=std,
        tau=0.4,
        method="fcam",
        postprocess="onnx",
    )
    export_graph(LocalizationGraph(fcam, "fcam", "onnx", size, mean, std, 0.4), meta, path)
    return path


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-demo"]
    if len(args) != 1:
        sys.exit("usage: demo_model.py OUT_DIR [--no-demo]")
    main(Path(args[0]), demo="--no-demo" not in sys.argv)
