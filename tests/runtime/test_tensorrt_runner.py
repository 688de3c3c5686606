"""TrtRunner (fcam_deploy.runtime.tensorrt): against the recording fake ``tensorrt`` of tests/export/test_tensorrt.py
(whose execution context runs the graph with ONNX Runtime on the bound host addresses), plus a real-TensorRT test
that runs only where tensorrt and a CUDA GPU exist."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fcam_deploy.errors import BackendUnavailableError, InputError, ModelFormatError
from fcam_deploy.export import tensorrt as tx
from fcam_deploy.runtime import tensorrt as rt
from fcam_deploy.runtime.base import ModelMetadata, Runner


def _load_fake() -> Any:
    path = Path(__file__).resolve().parents[1] / "export" / "test_tensorrt.py"
    spec = importlib.util.spec_from_file_location("_fcam_fake_tensorrt_support", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fake_support = _load_fake()


class HostMemory:
    """Stand-in for the torch-CUDA buffers: CPU torch tensors (real addresses), a recorded stream handle."""

    stream_handle = 0xC0FFEE

    def __init__(self) -> None:
        self.syncs = 0
        self.releases = 0

    def activate(self) -> contextlib.ExitStack:
        return contextlib.ExitStack()

    def upload(self, array: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(array.copy())

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        import torch

        return torch.full(shape, 77, dtype=getattr(torch, dtype))  # garbage a missed write would leave

    @staticmethod
    def address(buf: Any) -> int:
        return int(buf.data_ptr())

    def synchronize(self) -> None:
        self.syncs += 1

    @staticmethod
    def download(buf: Any) -> np.ndarray:
        return buf.numpy().copy()

    def release(self) -> None:
        self.releases += 1


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, Path, Path]:
    fake = fake_support.install_fake(monkeypatch)
    onnx_path = tx.write_probe_onnx(tmp_path / "probe.onnx")
    plan = tmp_path / "probe.plan"
    tx.build_engine(onnx_path, plan, shapes=tx.parse_shapes(["1/2/4"]))
    fake.calls.clear()
    return fake, onnx_path, plan


def _runner(plan: Path, **kw: Any) -> rt.TrtRunner:
    meta = ModelMetadata.from_json_file(tx.sidecar_path(plan))
    return rt.TrtRunner(plan, meta, memory=HostMemory(), **kw)


def test_runner_matches_onnxruntime_and_binds_by_name(built: tuple[Any, Path, Path]) -> None:
    import onnxruntime as ort

    fake, onnx_path, plan = built
    runner = _runner(plan)
    assert isinstance(runner, Runner)
    assert runner.backend == "tensorrt" and runner.providers == ("tensorrt:cuda:0",) and not runner.fell_back_to_cpu
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = runner.run(images)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": images}), strict=True))
    assert list(got) == list(runner.metadata.output_names) == ["logits", "pred_class", "map", "mask"]
    for k, want in ref.items():
        assert got[k].dtype == want.dtype and got[k].shape == want.shape
        np.testing.assert_array_equal(got[k], want)
    calls = fake.calls
    assert ("set_input_shape", "images", (3, 32, 32, 3)) in calls
    bound = [c[1] for c in calls if c[0] == "set_tensor_address"]
    assert sorted(bound) == sorted(["images", "logits", "pred_class", "map", "mask"])
    assert ("execute_async_v3", HostMemory.stream_handle) in calls
    names = [c[0] for c in calls]
    assert names.index("set_input_shape") < names.index("execute_async_v3")
    assert max(i for i, n in enumerate(names) if n == "set_tensor_address") < names.index("execute_async_v3")
    assert runner._mem.syncs == 1 and runner._mem.releases == 1
    runner.close()
    runner.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(images)


def test_runner_input_errors(built: tuple[Any, Path, Path]) -> None:
    _, _, plan = built
    with _runner(plan) as runner:
        with pytest.raises(InputError, match="optimisation profile"):
            runner.run(np.zeros((5, 32, 32, 3), np.uint8))  # profile max batch is 4
        with pytest.raises(InputError, match="uint8"):
            runner.run(np.zeros((1, 32, 32, 3), np.float32))
        with pytest.raises(InputError, match="uint8"):
            runner.run(np.zeros((1, 16, 16, 3), np.uint8))


def test_runner_rejects_foreign_plans(built: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, _, plan = built
    other = tmp_path / "other.plan"
    other.write_bytes(b"not a plan")
    tx.sidecar_path(other).write_text(tx.sidecar_path(plan).read_text())
    with pytest.raises(ModelFormatError, match="could not deserialize"):
        _runner(other)


def test_serialized_plugins_allow_host_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = fake_support.install_fake(monkeypatch)
    onnx_path = tx.write_probe_onnx(tmp_path / "probe.onnx")
    lib = tmp_path / "libfcam_trt_plugins.so"
    lib.write_bytes(b"x")
    plan = tmp_path / "p.plan"
    tx.build_engine(onnx_path, plan, plugins=[lib], serialize_plugins=True)
    fake.calls.clear()
    meta = ModelMetadata.from_json_file(tx.sidecar_path(plan))
    rt.TrtRunner(plan, meta, memory=HostMemory(), host_code_allowed=True).close()
    assert ("engine_host_code_allowed", True) in fake.calls
    assert not [c for c in fake.calls if c[0] == "load_library"]


def test_open_runner_typed_errors(built: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, onnx_path, plan = built
    with pytest.raises(ModelFormatError):
        rt.open_runner(onnx_path)  # an ONNX file is not a plan
    with pytest.raises(ModelFormatError, match="no such"):
        rt.open_runner(tmp_path / "missing.plan")
    lone = tmp_path / "lone.plan"
    lone.write_bytes(plan.read_bytes())
    with pytest.raises(ModelFormatError, match="sidecar"):
        rt.open_runner(lone)
    with pytest.raises(BackendUnavailableError, match="CUDA devices only"):
        rt.open_runner(plan, device="cpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error path")
def test_open_runner_without_gpu(built: tuple[Any, Path, Path]) -> None:
    _, _, plan = built
    with pytest.raises(BackendUnavailableError, match="CUDA device"):
        rt.open_runner(plan)


def test_resolve_plugin_libraries(tmp_path: Path) -> None:
    a, b = tmp_path / "a.so", tmp_path / "b.so"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    env = {rt.PLUGINS_ENV: f"{a}:{b}"}
    assert rt.resolve_plugin_libraries(None, env=env) == [a.resolve(), b.resolve()]
    assert rt.resolve_plugin_libraries(str(b), env=env) == [b.resolve()]  # explicit wins
    assert rt.resolve_plugin_libraries(None, recorded=[str(a)], env={}) == [a.resolve()]
    assert rt.resolve_plugin_libraries(None, env={}) == []
    with pytest.raises(BackendUnavailableError, match=rt.PLUGINS_ENV):
        rt.resolve_plugin_libraries(None, env={rt.PLUGINS_ENV: str(tmp_path / "gone.so")})
    with pytest.raises(BackendUnavailableError, match="sidecar"):
        rt.resolve_plugin_libraries(None, recorded=[str(tmp_path / "gone.so")], env={})


def _real_trt_available() -> str | None:
    if "tensorrt" in sys.modules and not hasattr(sys.modules["tensorrt"], "Builder"):
        return "tensorrt replaced"
    reason = tx.tensorrt_unavailable_reason()  # a stub-only `tensorrt` namespace package does not count
    if reason is not None:
        return reason
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


@pytest.mark.trt
@pytest.mark.skipif(_real_trt_available() is not None, reason=f"needs TensorRT + GPU: {_real_trt_available()}")
def test_real_tensorrt_engine_matches_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    onnx_path = tx.write_probe_onnx(tmp_path / "probe.onnx")
    plan = tmp_path / "probe.plan"
    tx.build_engine(onnx_path, plan, shapes=tx.parse_shapes(["1/2/4"]), tf32=False)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": images}), strict=True))
    with rt.open_runner(plan) as runner:
        got = runner.run(images)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-4)
    np.testing.assert_allclose(got["map"], ref["map"], atol=1e-4)
    assert np.array_equal(got["pred_class"], ref["pred_class"])
    assert np.count_nonzero(got["mask"] != ref["mask"]) <= 2


def test_localizer_routes_plans_to_the_tensorrt_runner(
    built: tuple[Any, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Localizer.load(".plan") -> open_runner -> TrtRunner (fake TensorRT, host buffers) predicts exactly what the
    ONNX Runtime backend predicts on the same images of other sizes."""
    from fcam_deploy.runtime import Localizer

    fake, onnx_path, plan = built
    monkeypatch.setattr(rt, "_CudaMemory", lambda index: HostMemory())
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(32, 32), (45, 20), (70, 90)]]
    with Localizer.load(plan) as trt_loc, Localizer.load(onnx_path, backend="onnxruntime") as ort_loc:
        assert trt_loc.backend == "tensorrt" and trt_loc.providers == ("tensorrt:cuda:0",)
        for got, ref in zip(trt_loc.predict(images), ort_loc.predict(images), strict=True):
            assert (got.class_index, got.boxes, got.size) == (ref.class_index, ref.boxes, ref.size)
            assert got.score == ref.score
            np.testing.assert_array_equal(got.map, ref.map)
    assert any(c[0] == "execute_async_v3" for c in fake.calls)


def test_runner_is_thread_safe(built: tuple[Any, Path, Path]) -> None:
    """One execution context shared by 4 threads: the runner's lock keeps every result equal to a serial run."""
    from concurrent.futures import ThreadPoolExecutor

    _, _, plan = built
    rng = np.random.default_rng(11)
    batches = [rng.integers(0, 256, (int(rng.integers(1, 5)), 32, 32, 3), dtype=np.uint8) for _ in range(16)]
    with _runner(plan) as runner:
        serial = [runner.run(b) for b in batches]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(runner.run, batches))
    for s, p in zip(serial, parallel, strict=True):
        for k in s:
            np.testing.assert_array_equal(s[k], p[k])


def test_device_memory_without_a_gpu_is_a_typed_error() -> None:
    """The runner's device memory (cuda-python when installed, else torch) says what is missing on a machine with
    no NVIDIA driver / GPU, instead of failing later inside TensorRT."""
    from fcam_deploy.errors import BackendUnavailableError

    try:
        mem = rt._CudaMemory(0)
    except BackendUnavailableError as exc:
        assert "device 0" in str(exc) or "cuda-python" in str(exc)
    else:  # a machine with a GPU: the memory works
        buf = mem.upload(np.arange(12, dtype=np.uint8).reshape(3, 4))
        mem.synchronize()
        np.testing.assert_array_equal(mem.download(buf), np.arange(12, dtype=np.uint8).reshape(3, 4))
        mem.release()
