"""Localizer: backends agree, inputs of every kind and size, original-size outputs, typed errors, fallbacks."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from fcam_deploy.errors import BackendUnavailableError, ConfigError, FcamError, InputError, ModelFormatError
from fcam_deploy.ops import cam_postprocess_reference
from fcam_deploy.runtime import Localizer
from fcam_deploy.runtime.base import Runner
from fcam_deploy.runtime.localizer import StageTimes
from fcam_deploy.runtime.torch_runner import TorchRunner
from tests._support.models import RUNTIME_SIZE as SIZE
from tests._support.models import TAU, blob_image, graph_for, model_metadata
from tests._support.native import skip_or_fail


@pytest.fixture(scope="module")
def fcam_pair(models, onnx_model):
    """(torch Localizer, ORT Localizer) of the same F-CAM graph."""
    _, fcam = models
    torch_loc = Localizer(TorchRunner.from_graph(graph_for(fcam, "fcam", "onnx"), model_metadata("fcam", "onnx")))
    ort_loc = Localizer.load(onnx_model("fcam", "onnx"))
    return torch_loc, ort_loc


def _images() -> list:
    return [
        Image.fromarray(blob_image(57, 83, 0)),  # PIL, other size and aspect
        blob_image(*SIZE, 1),  # numpy at the model size
        torch.from_numpy(blob_image(30, 70, 2)).permute(2, 0, 1).contiguous(),  # uint8 CHW tensor
        Image.fromarray(blob_image(120, 90, 3)).convert("L"),  # gray PIL -> RGB
    ]


def test_runners_satisfy_protocol(fcam_pair) -> None:
    torch_loc, ort_loc = fcam_pair
    assert isinstance(torch_loc.runner, Runner) and isinstance(ort_loc.runner, Runner)
    assert ort_loc.backend == "onnxruntime" and ort_loc.providers == ("CPUExecutionProvider",)
    assert not ort_loc.fell_back_to_cpu


def test_torch_and_onnxruntime_give_the_same_predictions(fcam_pair) -> None:
    torch_loc, ort_loc = fcam_pair
    images = _images()
    a, b = torch_loc.predict(images), ort_loc.predict(images)
    assert len(a) == len(b) == len(images)
    for pa, pb in zip(a, b, strict=True):
        assert pa.class_index == pb.class_index and pa.class_name == pb.class_name
        assert abs(pa.score - pb.score) < 1e-5
        assert pa.map.shape == pb.map.shape == pa.size
        assert np.abs(pa.map - pb.map).max() <= 1e-4
        thr = TAU * max(float(pa.map.max()), float(pb.map.max()))
        differ = pa.mask != pb.mask
        assert not (differ & (np.abs(pa.map - thr) > 1e-3)).any()
        assert pa.boxes == pb.boxes


def test_every_input_kind_gives_the_same_result(fcam_pair) -> None:
    _, loc = fcam_pair
    arr = blob_image(45, 61, 7)
    ref = loc.predict(arr)
    variants = [
        Image.fromarray(arr),
        torch.from_numpy(arr).permute(2, 0, 1),
        torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0,
    ]
    for v in variants:
        p = loc.predict(v)
        assert p.class_index == ref.class_index and p.boxes == ref.boxes
        np.testing.assert_array_equal(p.map, ref.map)
    batch = loc.predict(torch.from_numpy(np.stack([arr, arr])).permute(0, 3, 1, 2))  # (N, 3, H, W) = list
    assert len(batch) == 2 and all(np.array_equal(p.map, ref.map) for p in batch)
    assert loc.predict([]) == []


def test_preprocessing_equals_the_evaluation_transform(fcam_pair) -> None:
    from fcam_deploy.data.transforms import resize_to_tensor

    _, loc = fcam_pair
    pil = Image.fromarray(blob_image(77, 51, 4))
    x, sizes = loc.preprocess([pil])
    ref = resize_to_tensor(pil, SIZE[0]).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(x[0], ref)
    assert sizes == [(77, 51)]


def _reference_boxes(model_map: np.ndarray, size: tuple[int, int], tau: float, k: int) -> list[tuple[int, ...]]:
    """Independent oracle: the NumPy reference op (scipy labelling) from the model-size map to ``size``."""
    ref = cam_postprocess_reference(model_map[None], size[0], size[1], tau, max_boxes=k, normalize=False)
    return [tuple(int(v) for v in row) for row in ref.boxes[0][: int(ref.count[0])]]


def test_outputs_at_model_size_are_the_graph_outputs(fcam_pair) -> None:
    _, loc = fcam_pair
    img = blob_image(*SIZE, 5)
    raw = loc.runner.run(img[None])
    p = loc.predict(img)
    np.testing.assert_array_equal(p.map, raw["map"][0])  # bilinear to the same size is the identity
    np.testing.assert_array_equal(p.mask, raw["mask"][0].astype(bool))  # the graph's rule: map > tau * max
    assert [tuple(b) for b in p.boxes] == _reference_boxes(raw["map"][0], SIZE, TAU, 8)
    assert p.class_index == int(raw["pred_class"][0])
    logits = raw["logits"][0].astype(np.float64)
    assert p.score == pytest.approx(float(np.exp(logits).max() / np.exp(logits).sum()), rel=1e-6)


@pytest.mark.parametrize("hw", [(97, 33), (375, 500), (13, 140), (1, 1)])
def test_outputs_at_original_size(fcam_pair, hw: tuple[int, int]) -> None:
    """map = F.interpolate of the model-size map; mask and boxes computed at the original size (oracles: torch's
    bilinear, the threshold rule, scipy-labelled reference boxes)."""
    _, loc = fcam_pair
    img = blob_image(*hw, 6)
    p = loc.predict(img)
    assert p.map.shape == p.mask.shape == hw and p.map.dtype == np.float32 and p.mask.dtype == np.bool_
    assert 0.0 <= float(p.map.min()) and float(p.map.max()) <= 1.0
    model_map = loc.runner.run(loc.preprocess([img])[0])["map"][0]
    ref = (
        torch.nn.functional.interpolate(
            torch.from_numpy(model_map)[None, None], size=hw, mode="bilinear", align_corners=False
        )[0, 0]
        .clamp(0, 1)
        .numpy()
    )
    np.testing.assert_allclose(p.map, ref, atol=4e-6)  # torch's own operation order: a few ulp apart
    exact = cam_postprocess_reference(model_map[None], hw[0], hw[1], TAU, normalize=False)
    np.testing.assert_array_equal(p.map, exact.full[0])  # the spec's operation order, bit for bit
    np.testing.assert_array_equal(p.mask, p.map > np.float32(TAU) * p.map.max())
    assert [tuple(b) for b in p.boxes] == _reference_boxes(model_map, hw, TAU, 8)
    assert len(p.boxes) >= 1 or not p.mask.any()
    for b in p.boxes:
        assert 0 <= b.x0 <= b.x1 < hw[1] and 0 <= b.y0 <= b.y1 < hw[0]
        assert p.mask[b.y0 : b.y1 + 1, b.x0 : b.x1 + 1].any()
    assert p.to_dict()["size"] == list(hw)


def test_results_are_identical_for_every_thread_and_batch_setting(fcam_pair, onnx_model) -> None:
    _, ref_loc = fcam_pair
    images = [blob_image(30 + 7 * i, 90 - 5 * i, 40 + i) for i in range(7)]
    ref = ref_loc.predict(images)
    for threads, batch in [(1, 1), (2, 3), (3, 16), (8, 2)]:
        loc = Localizer.load(onnx_model("fcam", "onnx"), threads=threads, batch_size=batch)
        assert loc.threads == threads
        for a, b in zip(loc.predict(images), ref, strict=True):
            assert a.class_index == b.class_index and a.boxes == b.boxes and a.score == b.score
            np.testing.assert_array_equal(a.map, b.map)
            np.testing.assert_array_equal(a.mask, b.mask)


def test_torch_backend_post_processes_through_the_torch_op(fcam_pair) -> None:
    """Same launcher on both backends: given the same model-size maps, the torch op and the compiled core agree
    bit for bit (the two backends' maps themselves differ by float rounding only)."""
    from fcam_deploy.ops import native_status
    from fcam_deploy.runtime.postprocess import native_postprocess, torch_op_postprocess

    torch_loc, ort_loc = fcam_pair
    assert ort_loc.postprocessor is native_postprocess
    if not native_status().available:
        skip_or_fail(f"torch extension not built: {native_status().reason}")
    assert torch_loc.postprocessor is torch_op_postprocess
    rng = np.random.default_rng(3)
    maps = rng.random((3, *SIZE), dtype=np.float32)
    sizes = [(71, 20), SIZE, (5, 300)]
    a = torch_op_postprocess(maps, sizes, 0.4, 5, 1)
    b = native_postprocess(maps, sizes, 0.4, 5, 2)
    for x, y in zip(a.fulls + a.masks, b.fulls + b.masks, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.count, b.count)


def test_stage_times_are_recorded_inside_predict(fcam_pair) -> None:
    _, loc = fcam_pair
    times = StageTimes()
    loc.predict([blob_image(50, 60, i) for i in range(5)], timings=times)
    loc.predict(blob_image(20, 20, 9), timings=times)
    assert times.images == 6 and times.calls == 2
    assert times.preprocess_s > 0 and times.inference_s > 0 and times.postprocess_s > 0
    assert times.total_s == pytest.approx(times.preprocess_s + times.inference_s + times.postprocess_s)
    assert sum(times.share(s) for s in ("preprocess", "inference", "postprocess")) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10, 4), dtype=np.uint8), "RGB"),
        (np.zeros((10, 10), dtype=np.uint8), "RGB"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
        (torch.zeros(4, 10, 10), r"\(3, H, W\)"),
        (torch.full((3, 5, 5), 2.0), r"\[0, 1\]"),
        (torch.full((3, 5, 5), float("nan")), "finite"),
        ("image.png", "unsupported image type"),
        (Image.new("I;16", (8, 8)), "mode"),
    ],
)
def test_bad_images_raise_typed_errors(fcam_pair, bad, match: str) -> None:
    _, loc = fcam_pair
    with pytest.raises(InputError, match=match):
        loc.predict(bad)
    with pytest.raises(InputError, match="image 1"):
        loc.predict([blob_image(8, 8, 0), bad])


def test_wrong_model_kinds_raise_typed_errors(tmp_path, onnx_model) -> None:
    onnx_path = onnx_model("fcam", "onnx")
    with pytest.raises(ModelFormatError, match="backend='onnxruntime'"):
        Localizer.load(onnx_path, backend="torch")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="TensorRT plan"):
        Localizer.load(plan, backend="onnxruntime")
    with pytest.raises(FcamError):  # no tensorrt here / no sidecar: BackendUnavailableError or ModelFormatError
        Localizer.load(plan)
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ModelFormatError, match="fake.onnx"):
        Localizer.load(fake)
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="unknown model kind"):
        Localizer.load(pt)
    with pytest.raises(ModelFormatError, match="no such"):
        Localizer.load(tmp_path / "missing.onnx")
    with pytest.raises(ModelFormatError, match="config.json"):
        Localizer.load(tmp_path)
    with pytest.raises(ConfigError, match="backend"):
        Localizer.load(onnx_path, backend="openvino")


def test_custom_op_graph_without_library(onnx_model, monkeypatch) -> None:
    from fcam_deploy.runtime.ort import ORT_OPS_ENV

    path = onnx_model("cam", "custom-op")
    with pytest.raises(BackendUnavailableError, match=r"nope\.so.*libfcam_ort_ops\.so"):
        Localizer.load(path, plugin_library=path.parent / "nope.so")
    monkeypatch.setenv(ORT_OPS_ENV, str(path.parent / "env_missing.so"))
    with pytest.raises(BackendUnavailableError, match=f"env_missing.so.*{ORT_OPS_ENV}"):
        Localizer.load(path)


def test_gpu_request_falls_back_to_cpu_visibly(onnx_model, caplog) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a working CUDA provider; no fallback to observe")
    with caplog.at_level(logging.WARNING, logger="fcam_deploy.runtime.ort"):
        loc = Localizer.load(onnx_model("fcam", "onnx"), device="cuda")
    assert loc.fell_back_to_cpu and loc.providers == ("CPUExecutionProvider",)
    assert any("fell back to CPU" in r.getMessage() for r in caplog.records)
    assert '"fell_back_to_cpu": true' in loc.describe()
    assert loc.predict(blob_image(20, 20, 0)).map.shape == (20, 20)


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnxruntime"])
def test_predict_is_thread_safe(fcam_pair, which: int) -> None:
    loc = fcam_pair[which]
    images = [blob_image(30 + i, 50 - i, i) for i in range(8)]
    serial = [loc.predict(im) for im in images]
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for r in range(3):
                for i in range(len(images)) if t % 2 else reversed(range(len(images))):
                    results[(t, r * 100 + i)] = (i, loc.predict(images[i]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(results) == 4 * 3 * len(images)
    for i, p in results.values():
        assert p.class_index == serial[i].class_index and p.boxes == serial[i].boxes
        np.testing.assert_array_equal(p.map, serial[i].map)


def test_torch_runner_lock_when_not_thread_safe(models) -> None:
    """A runner that says it is not thread-safe is never entered by two threads at once."""
    _, fcam = models
    inner = TorchRunner.from_graph(graph_for(fcam, "fcam", "onnx"), model_metadata("fcam", "onnx"))
    active, peak = [0], [0]
    guard = threading.Lock()

    class Unsafe:
        backend, thread_safe, providers, fell_back_to_cpu, device = "torch", False, ("torch:cpu",), False, "cpu"
        metadata = inner.metadata

        def run(self, x):
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                return inner.run(x)
            finally:
                with guard:
                    active[0] -= 1

        def close(self) -> None:
            inner.close()

    loc = Localizer(Unsafe())
    threads = [
        threading.Thread(target=lambda: [loc.predict(blob_image(20, 20, k)) for k in range(3)]) for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak[0] == 1
    loc.close()
    with pytest.raises(RuntimeError, match="close"):
        inner.run(blob_image(*SIZE, 0)[None])
