"""`fcam export` and `fcam parity` end to end on a checkpoint and a tiny synthetic split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _export_helpers import CLASS_NAMES, SIZE, ort_ops_library

from fcam_deploy.cli import main
from fcam_deploy.export.onnx_export import read_onnx_metadata


@pytest.fixture(scope="module")
def cli_onnx(tmp_path_factory, checkpoint_dir):
    out = tmp_path_factory.mktemp("cli") / "fcam.onnx"
    assert main(["export", "--checkpoint", str(checkpoint_dir), "--out", str(out)]) == 0
    return out


def test_export_cli_writes_checkpoint_metadata(cli_onnx, checkpoint_dir, capsys) -> None:
    meta = read_onnx_metadata(cli_onnx)
    assert meta.method == "fcam" and meta.postprocess == "onnx"  # defaults for an F-CAM checkpoint
    assert meta.tau == pytest.approx(0.42)  # the checkpoint's validation-optimal threshold
    assert meta.class_names == CLASS_NAMES and meta.input_size == SIZE
    assert meta.input_layout == "NHWC-uint8-RGB" and meta.dynamic_batch and meta.opset == 18
    # the source is named by folder and weights digest; no absolute path of this machine is shipped
    cfg = json.loads((checkpoint_dir / "config.json").read_text())
    assert meta.extra["checkpoint"] == checkpoint_dir.name
    assert meta.extra["checkpoint_sha256"] == cfg["weights_sha256"]
    assert not any(str(checkpoint_dir.parent) in v for v in meta.to_props().values())
    from fcam_deploy import __version__

    assert meta.fcam_deploy_version == __version__


def test_export_cli_typed_errors(tmp_path, capsys) -> None:
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "fcam export: error:" in capsys.readouterr().err


def test_parity_cli_passes_on_the_synthetic_split(cli_onnx, synth_dir, tmp_path) -> None:
    report_path = tmp_path / "parity.json"
    replay = tmp_path / "replay"
    rc = main(["parity", str(cli_onnx), "--data", str(synth_dir), "--json", str(report_path),
               "--save-dir", str(replay)])
    report = json.loads(report_path.read_text())
    assert rc == 0 and report["passed"], report
    assert report["num_images"] == 10
    cmp = report["comparisons"][0]
    assert cmp["max_abs_diff"]["map"] <= 1e-4 and cmp["max_abs_diff"]["logits"] <= 1e-4
    assert cmp["max_abs_diff"]["pred_class"] == 0 and cmp["mask_pixels_differ_non_tie"] == 0
    m = report["metrics"]
    assert m["pytorch"]["MaxBoxAccV2"] == m["onnxruntime-cpu"]["MaxBoxAccV2"]
    assert abs(m["pytorch"]["PxAP"] - m["onnxruntime-cpu"]["PxAP"]) <= 1e-2
    assert m["pytorch"]["PxAP"] is not None  # the synthetic set has masks
    # replay files are Polygraphy's own format
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    outs = RunResults.load(str(replay / "torch_outputs.json"))
    assert [name for name, _ in outs] == ["pytorch"]
    feeds = load_json(str(replay / "inputs.json"))
    assert feeds[0]["images"].dtype == np.uint8 and feeds[0]["images"].shape[1:] == (*SIZE, 3)


def test_parity_detects_a_wrong_model(cli_onnx, synth_dir, tmp_path, checkpoint_dir) -> None:
    """Parity against a checkpoint with other weights fails (the comparison can fail)."""
    import torch

    from fcam_deploy.models.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint_dir)
    with torch.no_grad():
        model.seg_head.bias.add_(torch.tensor([0.5, -0.5]))
    other = tmp_path / "other"
    save_checkpoint(other, model, meta)
    rc = main(["parity", str(cli_onnx), "--data", str(synth_dir), "--json", str(tmp_path / "p.json"),
               "--checkpoint", str(other), "--no-metrics", "--limit", "4"])
    report = json.loads((tmp_path / "p.json").read_text())
    assert rc == 1 and not report["passed"] and report["comparisons"][0]["max_abs_diff"]["map"] > 1e-3


def test_parity_custom_op_against_standard_graph(checkpoint_dir, synth_dir, cli_onnx, tmp_path) -> None:
    lib = ort_ops_library()
    if lib is None:
        pytest.skip("libfcam_ort_ops.so not built (make kernels)")
    custom = tmp_path / "fcam_custom.onnx"
    assert main(["export", "--checkpoint", str(checkpoint_dir), "--out", str(custom),
                 "--postprocess", "custom-op"]) == 0
    rc = main(["parity", str(custom), "--data", str(synth_dir), "--json", str(tmp_path / "c.json"),
               "--plugins", str(lib), "--against", str(cli_onnx)])
    report = json.loads((tmp_path / "c.json").read_text())
    assert rc == 0 and report["passed"], report
    assert report["against"]["max_abs_diff_vs_model"]["map"] <= 1e-5


def test_every_shipped_profile_loads() -> None:
    from pathlib import Path

    from fcam_deploy.export.profiles import load_profile

    root = Path(__file__).resolve().parents[2] / "export" / "profiles"
    profiles = sorted(root.glob("*.toml"))
    assert profiles, root
    for path in profiles:
        prof = load_profile(path)
        runtime = path.stem.split("-")[0]
        assert runtime in ("ort", "trt"), path.name
        assert ("dynamic" in path.stem) == prof.dynamic_batch, path.name
        if prof.engine_plugins:
            assert prof.postprocess == "custom-op"


def test_profile_errors(tmp_path) -> None:
    from fcam_deploy.errors import ConfigError
    from fcam_deploy.export.profiles import load_profile

    bad = tmp_path / "bad.toml"
    bad.write_text('[export]\npostprocess = "onnx"\nprecision = "int8"\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        load_profile(bad)
    bad.write_text('[export]\npostprocess = "fused"\n')
    with pytest.raises(ConfigError, match="postprocess"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="no such profile"):
        load_profile(tmp_path / "missing.toml")


def test_export_cli_profile_and_override(checkpoint_dir, tmp_path, capsys) -> None:
    prof = tmp_path / "trt-fp32_static-48_b1.toml"
    prof.write_text('[export]\npostprocess = "none"\nmethod = "cam"\ndynamic_batch = false\nopset = 19\n'
                    '[engine]\nshapes = "1/1/1"\n')
    out = tmp_path / "p.onnx"
    assert main(["export", "--checkpoint", str(checkpoint_dir), "--out", str(out), "--profile", str(prof),
                 "--opset", "20"]) == 0
    meta = read_onnx_metadata(out)
    assert (meta.postprocess, meta.method, meta.dynamic_batch, meta.opset) == ("none", "cam", False, 20)
    import onnx

    assert {o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")} == {20}
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["next"].startswith("fcam build-engine") and "--shapes 1/1/1" in printed["next"]
