"""Engine building (fcam_deploy.export.tensorrt, `fcam build-engine`) without TensorRT: shape profiles, sidecar,
ONNX summary, and the TensorRT call sequence against a recording fake ``tensorrt`` module.

The fake mirrors the TensorRT 10/11 Python binding names used by the code (checked against the TensorRT OSS
``python/src/infer/pyCore.cpp`` / ``parsers/pyOnnx.cpp``); a name the code used that the fake lacks fails with
AttributeError. Its execution context really runs the ONNX graph (with ONNX Runtime) on the host memory whose
addresses were bound with ``set_tensor_address``, so the runtime tests (tests/runtime/test_tensorrt_runner.py,
which load this module by path) verify binding by name, shapes and dtypes end to end.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError
from fcam_deploy.export import tensorrt as tx
from fcam_deploy.runtime.base import ModelMetadata

# ---------------------------------------------------------------------------------------------------------------
# Fake tensorrt


class _Flag(enum.IntEnum):
    STRONGLY_TYPED = 1  # value of kSTRONGLY_TYPED in NvInfer.h (10.x and 11.x)
    PREFER_AOT_PYTHON_PLUGINS = 2


class _IOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class _DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


_NP_TO_TRT = {
    "float32": "FLOAT",
    "float16": "HALF",
    "int8": "INT8",
    "int32": "INT32",
    "bool": "BOOL",
    "uint8": "UINT8",
    "int64": "INT64",
}


class FakeTRT:
    """Builds a fresh fake ``tensorrt`` module whose objects append ``(call, args...)`` to ``self.calls``."""

    def __init__(
        self, *, parse_ok: bool = True, parse_errors: tuple[str, ...] = (), build_ok: bool = True, load_ok: bool = True
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.parse_ok = parse_ok
        self.parse_errors = parse_errors
        self.build_ok = build_ok
        self.load_ok = load_ok
        self.module = self._make_module()

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def _make_module(self) -> types.ModuleType:
        fake = self
        calls = self.calls
        m = types.ModuleType("tensorrt")
        m.__version__ = "10.99.0-fake"

        class Logger:
            VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

            def __init__(self, severity: int = 2) -> None:
                calls.append(("Logger", severity))

        class PluginRegistry:
            def load_library(self, path: str) -> Any:
                calls.append(("load_library", path))
                return object() if fake.load_ok else None

        registry = PluginRegistry()

        class Network:
            def __init__(self, flags: int) -> None:
                self.flags = flags

        class Parser:
            def __init__(self, network: Network, logger: Logger) -> None:
                calls.append(("OnnxParser",))
                self.num_errors = 0

            def parse_from_file(self, path: str) -> bool:
                calls.append(("parse_from_file", path))
                self.path = path
                self.num_errors = 0 if fake.parse_ok else len(fake.parse_errors)
                return fake.parse_ok

            def get_error(self, i: int) -> str:
                return fake.parse_errors[i]

        class Profile:
            def set_shape(self, name: str, lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> None:
                calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

        class TimingCache:
            def __init__(self, blob: bytes) -> None:
                self.blob = bytes(blob)

            def serialize(self) -> bytes:
                return b"TIMING:" + self.blob

        class Config:
            def __init__(self) -> None:
                self._cache: TimingCache | None = None
                self._plugins: list[str] = []

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                calls.append(("set_memory_pool_limit", pool, size))

            def clear_flag(self, flag: Any) -> None:
                calls.append(("clear_flag", flag))

            def set_flag(self, flag: Any) -> None:  # precision flags must never be set
                calls.append(("set_flag", flag))

            def add_optimization_profile(self, profile: Profile) -> int:
                calls.append(("add_optimization_profile",))
                return 0

            def create_timing_cache(self, blob: bytes) -> TimingCache:
                calls.append(("create_timing_cache", bytes(blob)))
                return TimingCache(blob)

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                calls.append(("set_timing_cache", ignore_mismatch))
                self._cache = cache
                return True

            def get_timing_cache(self) -> TimingCache | None:
                return self._cache

            @property
            def plugins_to_serialize(self) -> list[str]:
                return self._plugins

            @plugins_to_serialize.setter
            def plugins_to_serialize(self, paths: list[str]) -> None:
                calls.append(("plugins_to_serialize", list(paths)))
                self._plugins = list(paths)

        class Builder:
            def __init__(self, logger: Logger) -> None:
                calls.append(("Builder",))

            def get_plugin_registry(self) -> PluginRegistry:
                return registry

            def create_network(self, flags: int) -> Network:
                calls.append(("create_network", flags))
                self.network = Network(flags)
                return self.network

            def create_builder_config(self) -> Config:
                calls.append(("create_builder_config",))
                return Config()

            def create_optimization_profile(self) -> Profile:
                calls.append(("create_optimization_profile",))
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                calls.append(("build_serialized_network",))
                if not fake.build_ok:
                    return None
                onnx_path = next(c[1] for c in calls if c[0] == "parse_from_file")
                return b"FAKEPLAN" + json.dumps({"onnx": onnx_path, "flags": network.flags}).encode()

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                calls.append(("Runtime",))
                self._host_code = False

            def get_plugin_registry(self) -> PluginRegistry:
                return registry

            @property
            def engine_host_code_allowed(self) -> bool:
                return self._host_code

            @engine_host_code_allowed.setter
            def engine_host_code_allowed(self, value: bool) -> None:
                calls.append(("engine_host_code_allowed", value))
                self._host_code = value

            def deserialize_cuda_engine(self, blob: bytes) -> Any:
                calls.append(("deserialize_cuda_engine", len(blob)))
                if not blob.startswith(b"FAKEPLAN"):
                    return None
                return _Engine(json.loads(blob[len(b"FAKEPLAN") :].decode())["onnx"], calls)

        m.Logger = Logger
        m.Builder = Builder
        m.Runtime = Runtime
        m.OnnxParser = Parser
        m.NetworkDefinitionCreationFlag = _Flag
        m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        m.BuilderFlag = types.SimpleNamespace(TF32="TF32", FP16="FP16", INT8="INT8")
        m.TensorIOMode = _IOMode
        m.DataType = _DataType
        m.get_plugin_registry = lambda: registry
        return m


class _Engine:
    """Fake ICudaEngine over an ONNX file; its context executes the graph with ONNX Runtime on bound addresses."""

    def __init__(self, onnx_path: str, calls: list[tuple[Any, ...]]) -> None:
        import onnxruntime as ort

        self.summary = tx.read_onnx_summary(onnx_path)
        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.calls = calls
        self.tensors = list(self.summary.inputs) + list(self.summary.outputs)

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, i: int) -> str:
        return self.tensors[i].name

    def get_tensor_mode(self, name: str) -> _IOMode:
        return _IOMode.INPUT if name in {t.name for t in self.summary.inputs} else _IOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> _DataType:
        t = next(t for t in self.tensors if t.name == name)
        return _DataType[_NP_TO_TRT[t.dtype]]

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        t = next(t for t in self.summary.inputs if t.name == name)
        rest = t.shape[1:]
        return (1, *rest), (2, *rest), (4, *rest)

    def create_execution_context(self) -> _Context:
        self.calls.append(("create_execution_context",))
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.engine.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = next(t for t in self.engine.tensors if t.name == name)
        batch = next(iter(self.shapes.values()))[0]
        return tuple(batch if d < 0 else d for d in t.shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.engine.calls.append(("set_tensor_address", name))
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.engine.calls.append(("execute_async_v3", stream_handle))
        feeds = {}
        for t in self.engine.summary.inputs:
            shape = self.shapes[t.name]
            dtype = np.dtype(t.dtype)
            nbytes = int(np.prod(shape)) * dtype.itemsize
            feeds[t.name] = np.frombuffer(ctypes.string_at(self.addresses[t.name], nbytes), dtype).reshape(shape)
        names = [o.name for o in self.engine.session.get_outputs()]
        for name, value in zip(names, self.engine.session.run(None, feeds), strict=True):
            want = self.get_tensor_shape(name)
            assert value.shape == want, (name, value.shape, want)
            arr = np.ascontiguousarray(value)
            ctypes.memmove(self.addresses[name], arr.ctypes.data, arr.nbytes)
        return True


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    return tx.write_probe_onnx(tmp_path / "probe.onnx")


def install_fake(monkeypatch: pytest.MonkeyPatch, **kw: Any) -> FakeTRT:
    fake = FakeTRT(**kw)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    return fake


# ---------------------------------------------------------------------------------------------------------------
# Shapes


def test_parse_shapes_named_and_batch_only() -> None:
    got = tx.parse_shapes(["images:1x32x32x3/2x32x32x3/4x32x32x3", "1/2/8"])
    assert got["images"] == ((1, 32, 32, 3), (2, 32, 32, 3), (4, 32, 32, 3))
    assert got[None] == ((1,), (2,), (8,))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("1/2", "three shapes"),
        ("1/2/3/4", "three shapes"),
        ("a/2/3", "not a list of integers"),
        ("images:1x3/2xQ/3x3", "not a list of integers"),
    ],
)
def test_parse_shapes_errors(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tx.parse_shapes([spec])


def test_parse_shapes_duplicate_name() -> None:
    with pytest.raises(ConfigError, match="twice"):
        tx.parse_shapes(["images:1/2/3", "images:1/1/1"])


def test_resolve_profiles_rules(probe: Path) -> None:
    inputs = tx.read_onnx_summary(probe).inputs
    (p,) = tx.resolve_profiles(inputs, tx.parse_shapes(["1/3/5"]))
    assert (p.name, p.min, p.opt, p.max) == ("images", (1, 32, 32, 3), (3, 32, 32, 3), (5, 32, 32, 3))
    (d,) = tx.resolve_profiles(inputs, None)  # dynamic batch, nothing given -> batch 1
    assert d.min == d.opt == d.max == (1, 32, 32, 3)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        tx.resolve_profiles(inputs, tx.parse_shapes(["4/2/8"]))
    with pytest.raises(ConfigError, match="rank"):
        tx.resolve_profiles(inputs, tx.parse_shapes(["images:1x32x32/2x32x32/4x32x32"]))
    with pytest.raises(ConfigError, match="fixed to 32"):
        tx.resolve_profiles(inputs, tx.parse_shapes(["images:1x64x64x3/2x64x64x3/4x64x64x3"]))
    with pytest.raises(ConfigError, match="unknown input"):
        tx.resolve_profiles(inputs, tx.parse_shapes(["input:1/2/4"]))
    with pytest.raises(ConfigError, match=">= 1"):
        tx.resolve_profiles(inputs, tx.parse_shapes(["0/2/4"]))


def test_resolve_profiles_dynamic_spatial_needs_full_shape() -> None:
    t = tx.TensorInfo("images", "uint8", (-1, -1, -1, 3))
    with pytest.raises(ConfigError, match="beyond the batch"):
        tx.resolve_profiles([t], None)
    with pytest.raises(ConfigError, match="give full shapes"):
        tx.resolve_profiles([t], tx.parse_shapes(["1/2/4"]))
    (p,) = tx.resolve_profiles([t], tx.parse_shapes(["1x16x16x3/1x32x32x3/2x64x64x3"]))
    assert p.max == (2, 64, 64, 3)


# ---------------------------------------------------------------------------------------------------------------
# ONNX summary and sidecar


def test_onnx_summary_reads_io_and_metadata(probe: Path) -> None:
    s = tx.read_onnx_summary(probe)
    assert [t.name for t in s.inputs] == ["images"]
    assert s.inputs[0].dtype == "uint8" and s.inputs[0].shape == (-1, 32, 32, 3)
    assert [t.name for t in s.outputs] == ["logits", "pred_class", "map", "mask"]
    assert s.metadata["fcam_deploy.method"] == "cam" and s.custom_domains == ()
    assert len(s.sha256) == 64


def test_onnx_summary_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "model.plan"
    bad.write_bytes(b"\x00\x01not onnx at all" * 10)
    with pytest.raises(ModelFormatError, match="not an ONNX model"):
        tx.read_onnx_summary(bad)
    with pytest.raises(ModelFormatError, match="no such ONNX file"):
        tx.read_onnx_summary(tmp_path / "missing.onnx")


def _sidecar(probe: Path) -> tx.EngineSidecar:
    s = tx.read_onnx_summary(probe)
    return tx.EngineSidecar(
        metadata=s.metadata,
        inputs=s.inputs,
        outputs=s.outputs,
        profiles=(tx.ShapeProfile("images", (1, 32, 32, 3), (2, 32, 32, 3), (4, 32, 32, 3)),),
        plugins=("/opt/lib/libfcam_trt_plugins.so",),
        plugins_serialized=True,
        tensorrt_version="10.3.0",
        onnx_file="probe.onnx",
        onnx_sha256=s.sha256,
        extra={"tf32": False},
    )


def test_sidecar_roundtrip_and_runtime_contract(probe: Path, tmp_path: Path) -> None:
    plan = tmp_path / "m.plan"
    side = _sidecar(probe)
    path = tx.write_sidecar(plan, side)
    assert path == tmp_path / "m.plan.json"
    assert tx.read_sidecar(plan) == side
    raw = json.loads(path.read_text())
    assert all(isinstance(v, str) for v in raw.values())  # flat str -> str, as ModelMetadata.from_json_file wants
    meta = ModelMetadata.from_json_file(path)  # the runtime's reader accepts it
    assert meta == ModelMetadata.from_props(tx.read_onnx_summary(probe).metadata)


def test_sidecar_errors(probe: Path, tmp_path: Path) -> None:
    plan = tmp_path / "m.plan"
    with pytest.raises(ModelFormatError, match="missing"):
        tx.read_sidecar(plan)
    tx.sidecar_path(plan).write_text("{not json")
    with pytest.raises(ModelFormatError, match="JSON"):
        tx.read_sidecar(plan)
    props = _sidecar(probe).to_props()
    props[tx.ENGINE_PREFIX + "format_version"] = "99"
    tx.sidecar_path(plan).write_text(json.dumps(props))
    with pytest.raises(ModelFormatError, match="format_version"):
        tx.read_sidecar(plan)
    tx.sidecar_path(plan).write_text(json.dumps({"fcam_deploy.format": "fcam-deploy-model"}))
    with pytest.raises(ModelFormatError, match="not an fcam-deploy engine sidecar"):
        tx.read_sidecar(plan)


# ---------------------------------------------------------------------------------------------------------------
# build_engine


def test_build_engine_without_tensorrt(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(BackendUnavailableError, match="install TensorRT"):
        tx.build_engine(probe, tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()


def test_build_engine_call_sequence(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    fake = install_fake(monkeypatch)
    lib = tmp_path / "libfcam_trt_plugins.so"
    lib.write_bytes(b"\x7fELF fake")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    plan = tmp_path / "out" / "m.plan"
    res = tx.build_engine(
        probe,
        plan,
        plugins=[lib],
        shapes=tx.parse_shapes(["1/2/4"]),
        timing_cache=cache,
        serialize_plugins=True,
        workspace_bytes=1 << 28,
        tf32=False,
    )
    names = fake.names()
    # strongly typed network, nothing else
    (flags,) = [c[1] for c in fake.calls if c[0] == "create_network"]
    assert flags == 1 << int(_Flag.STRONGLY_TYPED)
    # plugins loaded by explicit path before parsing, and serialized into the plan
    assert ("load_library", str(lib.resolve())) in fake.calls
    assert names.index("load_library") < names.index("parse_from_file")
    assert ("plugins_to_serialize", [str(lib.resolve())]) in fake.calls
    assert ("parse_from_file", str(probe)) in fake.calls
    # one profile with the input's name and full shapes
    assert ("set_shape", "images", (1, 32, 32, 3), (2, 32, 32, 3), (4, 32, 32, 3)) in fake.calls
    assert names.index("set_shape") < names.index("add_optimization_profile") < names.index("build_serialized_network")
    # precision comes from the ONNX: no precision flags; TF32 only cleared on request
    assert not [c for c in fake.calls if c[0] == "set_flag"]
    assert ("clear_flag", "TF32") in fake.calls
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 28) in fake.calls
    # timing cache read then written back
    assert ("create_timing_cache", b"OLD") in fake.calls
    assert cache.read_bytes() == b"TIMING:OLD" and res.timing_cache == cache
    # plan + sidecar
    assert plan.read_bytes().startswith(b"FAKEPLAN")
    side = tx.read_sidecar(plan)
    assert side.plugins_serialized and side.plugins == (str(lib.resolve()),)
    assert side.tensorrt_version == "10.99.0-fake"
    assert side.profiles[0].max == (4, 32, 32, 3)
    assert side.metadata == tx.read_onnx_summary(probe).metadata
    assert res.sidecar == tx.sidecar_path(plan)


def test_build_engine_defaults_keep_tf32_and_no_cache(
    monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path
) -> None:
    fake = install_fake(monkeypatch)
    res = tx.build_engine(probe, tmp_path / "m.plan")
    names = fake.names()
    assert "clear_flag" not in names and "create_timing_cache" not in names and "load_library" not in names
    assert ("set_shape", "images", (1, 32, 32, 3), (1, 32, 32, 3), (1, 32, 32, 3)) in fake.calls
    assert res.timing_cache is None


def test_build_engine_parser_errors(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    install_fake(monkeypatch, parse_ok=False, parse_errors=("node 7: Plugin not found, are the plugin name ...",))
    with pytest.raises(ModelFormatError, match="Plugin not found.*|custom node found no plugin"):
        tx.build_engine(probe, tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()


def test_build_engine_build_failure(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    install_fake(monkeypatch, build_ok=False)
    with pytest.raises(ModelFormatError, match="failed to build"):
        tx.build_engine(probe, tmp_path / "m.plan")


def test_build_engine_plugin_errors(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    install_fake(monkeypatch, load_ok=False)
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        tx.build_engine(probe, tmp_path / "m.plan", plugins=[tmp_path / "nope.so"])
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match="could not load plugin library"):
        tx.build_engine(probe, tmp_path / "m.plan", plugins=[lib])
    with pytest.raises(ConfigError, match="needs at least one --plugins"):
        tx.build_engine(probe, tmp_path / "m.plan", serialize_plugins=True)


def test_build_engine_custom_domain_needs_plugins(monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    model = onnx.load(str(probe))
    model.opset_import.append(helper.make_opsetid("fcam", 1))
    custom = tmp_path / "custom.onnx"
    onnx.save(model, str(custom))
    install_fake(monkeypatch)
    with pytest.raises(ConfigError, match="custom op domain"):
        tx.build_engine(custom, tmp_path / "m.plan")


# ---------------------------------------------------------------------------------------------------------------
# CLI


def test_cli_build_engine(
    monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fcam_deploy.cli import main

    fake = install_fake(monkeypatch)
    monkeypatch.delenv("FCAM_TRT_PLUGINS", raising=False)
    plan = tmp_path / "m.plan"
    rc = main(["build-engine", str(probe), "--out", str(plan), "--shapes", "images:1/2/3", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"] == str(plan) and Path(out["sidecar"]).is_file()
    assert ("set_shape", "images", (1, 32, 32, 3), (2, 32, 32, 3), (3, 32, 32, 3)) in fake.calls


def test_cli_build_engine_env_plugins_and_errors(
    monkeypatch: pytest.MonkeyPatch, probe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fcam_deploy.cli import main

    fake = install_fake(monkeypatch)
    lib = tmp_path / "libp.so"
    lib.write_bytes(b"x")
    monkeypatch.setenv("FCAM_TRT_PLUGINS", str(lib))
    assert main(["build-engine", str(probe), "--out", str(tmp_path / "m.plan")]) == 0
    assert ("load_library", str(lib.resolve())) in fake.calls
    assert main(["build-engine", str(probe), "--out", str(tmp_path / "m.plan"), "--shapes", "1/2"]) == 2
    assert "three shapes" in capsys.readouterr().err
    monkeypatch.setenv("FCAM_TRT_PLUGINS", str(tmp_path / "gone.so"))
    assert main(["build-engine", str(probe), "--out", str(tmp_path / "m.plan")]) == 2
    assert "FCAM_TRT_PLUGINS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build-engine", str(probe)])  # --out is required


def test_probe_graph_is_a_valid_fcam_model(probe: Path) -> None:
    """The probe graph (doctor, tests) computes what its docstring says: GAP-linear logits and the min-max CAM."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(probe))
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    logits, pred, cmap, mask = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )
    import torch

    xn = (torch.from_numpy(x).permute(0, 3, 1, 2).float() - torch.tensor(w["mean255"])) / torch.tensor(w["std255"])
    feat = torch.relu(torch.nn.functional.conv2d(xn, torch.tensor(w["conv_w"]), torch.tensor(w["conv_b"]), padding=1))
    ref_logits = feat.mean((2, 3)) @ torch.tensor(w["head_w"]).T + torch.tensor(w["head_b"])
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4)
    assert np.array_equal(pred, ref_logits.argmax(1).numpy())
    cam = torch.einsum("nkhw,nk->nhw", feat, torch.tensor(w["head_w"])[torch.from_numpy(pred)])
    lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
    np.testing.assert_allclose(cmap, ((cam - lo) / (hi - lo)).numpy(), atol=1e-4)
    assert np.array_equal(mask, (cmap >= 0.5).astype(np.uint8))
    ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})


def test_stub_only_namespace_tensorrt_is_not_available(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``tensorrt`` namespace package (what ``pip install tensorrt-stubs`` leaves: a folder with only
    ``__init__.pyi``) imports and passes ``find_spec``, but every availability check must call it absent."""
    import importlib.util

    from fcam_deploy.bench.runner import _trt_unavailable_reason
    from fcam_deploy.cli import doctor

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("class Builder: ...\n__version__: str\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = sys.modules.pop("tensorrt", None)  # restored below: the namespace module must not leak to other tests
    try:
        importlib.invalidate_caches()
        assert importlib.util.find_spec("tensorrt") is not None  # the trap: the old find_spec check said "installed"
        with pytest.raises(
            BackendUnavailableError,
            match=r"not TensorRT's Python bindings \(it lacks __version__, "
            r"Builder, Runtime, Logger; a namespace package",
        ):
            tx.import_tensorrt()
        reason = tx.tensorrt_unavailable_reason()
        assert reason is not None and "tensorrt-stubs" in reason and str(tmp_path / "tensorrt") in reason
        assert "tensorrt-stubs" in (_trt_unavailable_reason() or "")
        checks = {c.name: c for c in doctor.collect(engine=True)}
        assert checks["tensorrt"].status == "missing" and "lacks __version__" in checks["tensorrt"].detail
        assert checks["tensorrt-engine"].status == "missing"  # no engine build tried against a namespace package
        sys.modules["tensorrt"] = None  # type: ignore[assignment]  # import raises ImportError
        assert "install TensorRT" in (tx.tensorrt_unavailable_reason() or "")
    finally:
        sys.modules.pop("tensorrt", None)
        if saved is not None:
            sys.modules["tensorrt"] = saved


def test_fake_with_the_binding_attributes_counts_as_available(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake(monkeypatch)
    assert tx.tensorrt_unavailable_reason() is None
    assert tx.import_tensorrt().__version__ == "10.99.0-fake"
