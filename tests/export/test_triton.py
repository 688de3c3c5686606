"""``fcam export --triton-repo``: the repository layout, config.pbtxt parsed with Triton's own ModelConfig protobuf
(from tritonclient) and checked against the graph as ONNX Runtime runs it; plans (sidecar), custom-op graphs,
fixed batch, tampering, the CLI. No Triton server runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the scale extra (tritonclient) is missing")
text_format = pytest.importorskip("google.protobuf.text_format")

from fcam_deploy.errors import BackendUnavailableError, ConfigError, ModelFormatError
from fcam_deploy.export import tensorrt as tx
from fcam_deploy.export.triton import TritonOptions, validate_repo, write_triton_repo
from tests._support.models import CLASS_NAMES
from tests._support.models import EXPORT_SIZE as SIZE

#: Triton data type -> numpy dtype (Triton's model_config.md table), independent of the module under test.
TRITON_TO_NUMPY = {
    "TYPE_UINT8": np.uint8,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP32": np.float32,
    "TYPE_BOOL": np.bool_,
    "TYPE_FP16": np.float16,
}


def _parse(path: Path) -> object:
    cfg = mc.ModelConfig()
    text_format.Parse(path.read_text(), cfg)  # Triton's schema: unknown fields / bad types fail here
    return cfg


def _ort_outputs(model: Path, batch: int) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, size=(batch, *SIZE, 3), dtype=np.uint8)
    names = tuple(o.name for o in sess.get_outputs())
    return dict(zip(names, sess.run(None, {"images": x}), strict=True)), names


def _expect_matches_graph(cfg: object, outputs: dict[str, np.ndarray], batched: bool) -> None:
    """Every configured output, as Triton would shape one request item, equals what ORT returns."""
    assert [o.name for o in cfg.output] == list(outputs)
    for o in cfg.output:
        got = outputs[o.name]
        assert got.dtype == TRITON_TO_NUMPY[mc.DataType.Name(o.data_type)], o.name
        per_item = list(got.shape[1:]) if batched else list(got.shape)
        shape = list(o.reshape.shape) if o.HasField("reshape") else list(o.dims)
        assert shape == per_item, (o.name, shape, per_item)
        if o.HasField("reshape"):
            assert list(o.dims) == [1] and per_item == []  # Triton's form for a batch-only tensor
    (inp,) = cfg.input
    assert inp.name == "images" and mc.DataType.Name(inp.data_type) == "TYPE_UINT8"
    assert list(inp.dims) == ([*SIZE, 3] if batched else [1, *SIZE, 3])


def test_onnx_repository(exported: Callable[..., Path], tmp_path: Path) -> None:
    model = exported("fcam", "onnx")
    repo = write_triton_repo(model, tmp_path / "repo", TritonOptions(name="fcam_tiny", max_batch_size=16))
    root = tmp_path / "repo" / "fcam_tiny"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "1/model.onnx",
        "config.pbtxt",
        "labels.txt",
    ]
    assert (root / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert (root / "labels.txt").read_text().splitlines() == list(CLASS_NAMES)
    cfg = _parse(root / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("fcam_tiny", "onnxruntime_onnx", 16)
    assert list(cfg.version_policy.specific.versions) == [1] and cfg.default_model_filename == "model.onnx"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [(1, "KIND_CPU")]
    assert json.loads(cfg.parameters["fcam_deploy.class_names"].string_value) == list(CLASS_NAMES)
    assert [o.label_filename for o in cfg.output if o.label_filename] == ["labels.txt"]
    assert [o.name for o in cfg.output if o.label_filename] == ["logits"]
    outputs, _ = _ort_outputs(model, batch=3)
    _expect_matches_graph(cfg, outputs, batched=True)
    assert repo.summary()["serve"].endswith("tritonserver --model-repository=/models")
    assert "--gpus" not in repo.summary()["serve"]  # KIND_CPU


def test_fixed_batch_graph(exported: Callable[..., Path], tmp_path: Path) -> None:
    model = exported("cam", "onnx", dynamic_batch=False)
    write_triton_repo(model, tmp_path / "r", TritonOptions(name="fixed"))
    cfg = _parse(tmp_path / "r" / "fixed" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    outputs, _ = _ort_outputs(model, batch=1)
    _expect_matches_graph(cfg, outputs, batched=False)
    with pytest.raises(ConfigError, match="fixed batch dimension"):
        write_triton_repo(model, tmp_path / "r2", TritonOptions(max_batch_size=4))


def test_custom_op_graph_needs_the_ort_library(exported: Callable[..., Path], tmp_path: Path) -> None:
    model = exported("cam", "custom-op")
    with pytest.raises(ConfigError, match="--triton-ort-ops"):
        write_triton_repo(model, tmp_path / "r")
    repo = write_triton_repo(model, tmp_path / "r", TritonOptions(name="co", ort_ops_library="/opt/fcam/lib.so"))
    cfg = _parse(tmp_path / "r" / "co" / "config.pbtxt")
    assert list(cfg.model_operations.op_library_filename) == ["/opt/fcam/lib.so"]
    dims = {o.name: (list(o.dims), list(o.reshape.shape) if o.HasField("reshape") else None) for o in cfg.output}
    assert dims["boxes"] == ([4, 4], None) and dims["box_count"] == ([1], [])  # max_boxes 4; one count per item
    assert dims["pred_class"] == ([1], [])
    assert any("/opt/fcam/lib.so" in n for n in repo.notes)


def _fake_plan(onnx_model: Path, plan: Path, max_batch: int, serialized: bool) -> Path:
    """A .plan stand-in with the sidecar `fcam build-engine` writes (no TensorRT here; only the sidecar is read)."""
    s = tx.read_onnx_summary(onnx_model)
    plan.write_bytes(b"not a real engine")
    tx.write_sidecar(
        plan,
        tx.EngineSidecar(
            metadata=s.metadata,
            inputs=s.inputs,
            outputs=s.outputs,
            profiles=(tx.ShapeProfile("images", (1, *SIZE, 3), (2, *SIZE, 3), (max_batch, *SIZE, 3)),),
            plugins=("/opt/fcam/libfcam_trt_plugins.so",),
            plugins_serialized=serialized,
            tensorrt_version="10.16.1",
            onnx_file=onnx_model.name,
            onnx_sha256=s.sha256,
        ),
    )
    return plan


def test_tensorrt_plan_repository(exported: Callable[..., Path], tmp_path: Path) -> None:
    onnx_model = exported("fcam", "onnx")
    plan = _fake_plan(onnx_model, tmp_path / "tiny.plan", max_batch=4, serialized=False)
    write_triton_repo(plan, tmp_path / "r")  # default max batch 8, capped by the profile's 4
    cfg = _parse(tmp_path / "r" / "tiny" / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size, cfg.default_model_filename) == ("tensorrt_plan", 4, "model.plan")
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert mc.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_GPU"
    assert (tmp_path / "r" / "tiny" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    outputs, _ = _ort_outputs(onnx_model, batch=2)  # the plan's I/O is the ONNX graph's
    _expect_matches_graph(cfg, outputs, batched=True)
    with pytest.raises(ConfigError, match="exceeds the engine profile"):
        write_triton_repo(plan, tmp_path / "r", TritonOptions(max_batch_size=16))
    with pytest.raises(ConfigError, match="runs on a GPU"):
        write_triton_repo(plan, tmp_path / "r", TritonOptions(instance_kind="KIND_CPU"))


def test_tensorrt_plan_with_plugin(exported: Callable[..., Path], tmp_path: Path) -> None:
    """A custom-op plan: the server loads the plugin library (backend config), the config names no op library."""
    onnx_model = exported("cam", "custom-op")
    plan = _fake_plan(onnx_model, tmp_path / "co.plan", max_batch=8, serialized=False)
    repo = write_triton_repo(plan, tmp_path / "r")
    cfg = _parse(tmp_path / "r" / "co" / "config.pbtxt")
    assert not cfg.model_operations.op_library_filename
    dims = {o.name: (list(o.dims), list(o.reshape.shape) if o.HasField("reshape") else None) for o in cfg.output}
    assert dims["boxes"] == ([4, 4], None) and dims["box_count"] == ([1], [])
    cmd = repo.summary()["serve"]
    assert "--gpus all" in cmd and '--backend-config=tensorrt,plugins="/plugins/libfcam_trt_plugins.so"' in cmd
    assert "-v /opt/fcam:/plugins" in cmd
    serialized = _fake_plan(onnx_model, tmp_path / "emb.plan", max_batch=8, serialized=True)
    assert any("embeds its plugin code" in n for n in write_triton_repo(serialized, tmp_path / "r").notes)


def test_validation_catches_a_config_that_disagrees(exported: Callable[..., Path], tmp_path: Path) -> None:
    model = exported("fcam", "onnx")
    write_triton_repo(model, tmp_path / "r", TritonOptions(name="m"))
    path = tmp_path / "r" / "m" / "config.pbtxt"
    good = path.read_text()
    tampered = {
        r"map: dims \[48, 47\] do not match": good.replace("dims: 48\n  dims: 48\n}", "dims: 48\n  dims: 47\n}", 1),
        "data_type": good.replace("data_type: TYPE_FP32", "data_type: TYPE_FP16", 1),
        "not a valid Triton ModelConfig": good.replace("max_batch_size:", "max_batch:", 1),
        "differs from its folder": good.replace('name: "m"', 'name: "other"', 1),
        "preferred_batch_size": good.replace("preferred_batch_size: 8", "preferred_batch_size: 64", 1),
        "output tensors": good.replace('name: "mask"', 'name: "masks"', 1),
    }
    for match, text in tampered.items():
        assert text != good, match
        path.write_text(text)
        with pytest.raises(ModelFormatError, match=match):
            validate_repo(tmp_path / "r", "m")
    path.write_text(good)
    assert validate_repo(tmp_path / "r", "m").max_batch_size == 8
    (tmp_path / "r" / "m" / "1" / "model.onnx").unlink()
    with pytest.raises(ModelFormatError, match="has no model.onnx"):
        validate_repo(tmp_path / "r", "m")


def test_cli_triton_repo(exported: Callable[..., Path], checkpoint_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    model = exported("fcam", "onnx")
    run = [sys.executable, "-m", "fcam_deploy", "export"]
    p = subprocess.run(
        [
            *run,
            "--model",
            str(model),
            "--triton-repo",
            str(tmp_path / "r"),
            "--triton-name",
            "a",
            "--triton-instances",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)["triton"]
    assert out["model"] == "a" and out["max_batch_size"] == 8
    assert _parse(tmp_path / "r" / "a" / "config.pbtxt").instance_group[0].count == 2
    p = subprocess.run([*run, "--model", str(model)], capture_output=True, text=True, check=False, timeout=300, env=env)
    assert p.returncode == 2 and "needs --triton-repo" in p.stderr
    # export + repository in one command
    p = subprocess.run(
        [
            *run,
            "--checkpoint",
            str(checkpoint_dir),
            "--out",
            str(tmp_path / "m.onnx"),
            "--triton-repo",
            str(tmp_path / "r2"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["triton"]["model_file"] == str(tmp_path / "r2" / "m" / "1" / "model.onnx")
    assert (tmp_path / "r2" / "m" / "1" / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()


def test_missing_tritonclient_is_a_typed_error(
    exported: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    monkeypatch.setitem(sys.modules, "tritonclient.grpc.model_config_pb2", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "fcam-deploy\[scale\]"'):
        write_triton_repo(exported("fcam", "onnx"), tmp_path / "r")
