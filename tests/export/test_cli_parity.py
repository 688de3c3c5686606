"""`fcam export` and `fcam parity` end to end on a checkpoint and a tiny synthetic split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcam_deploy.cli import main
from fcam_deploy.export.onnx_export import read_onnx_metadata
from tests._support.models import CLASS_NAMES, ort_ops_library
from tests._support.models import EXPORT_SIZE as SIZE
from tests._support.native import skip_or_fail


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


def test_parity_finds_the_checkpoint_next_to_the_model_by_digest(
    checkpoint_dir, cli_onnx, synth_dir, tmp_path, capsys
) -> None:
    import shutil

    from fcam_deploy.export.parity import _find_checkpoint

    meta = read_onnx_metadata(cli_onnx)
    assert _find_checkpoint(cli_onnx, meta) is None  # exported elsewhere: no absolute path to follow
    shutil.copytree(checkpoint_dir, tmp_path / checkpoint_dir.name)
    shutil.copy(cli_onnx, tmp_path / "m.onnx")
    assert _find_checkpoint(tmp_path / "m.onnx", meta) == tmp_path / checkpoint_dir.name
    cfg = json.loads((tmp_path / checkpoint_dir.name / "config.json").read_text())
    cfg["weights_sha256"] = "0" * 64  # another checkpoint of the same name is not taken for it
    (tmp_path / checkpoint_dir.name / "config.json").write_text(json.dumps(cfg))
    assert _find_checkpoint(tmp_path / "m.onnx", meta) is None
    rc = main(
        [
            "parity",
            str(tmp_path / "m.onnx"),
            "--data",
            str(synth_dir),
            "--json",
            str(tmp_path / "p.json"),
            "--limit",
            "2",
            "--no-metrics",
        ]
    )
    assert rc == 2 and "pass --checkpoint" in capsys.readouterr().err


def test_export_cli_typed_errors(tmp_path, capsys) -> None:
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "fcam export: error:" in capsys.readouterr().err


def test_parity_cli_passes_on_the_synthetic_split(cli_onnx, synth_dir, tmp_path, checkpoint_dir) -> None:
    report_path = tmp_path / "parity.json"
    replay = tmp_path / "replay"
    rc = main(
        [
            "parity",
            str(cli_onnx),
            "--data",
            str(synth_dir),
            "--json",
            str(report_path),
            "--save-dir",
            str(replay),
            "--checkpoint",
            str(checkpoint_dir),
        ]
    )
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
    rc = main(
        [
            "parity",
            str(cli_onnx),
            "--data",
            str(synth_dir),
            "--json",
            str(tmp_path / "p.json"),
            "--checkpoint",
            str(other),
            "--no-metrics",
            "--limit",
            "4",
        ]
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert rc == 1 and not report["passed"] and report["comparisons"][0]["max_abs_diff"]["map"] > 1e-3


def test_parity_custom_op_against_standard_graph(checkpoint_dir, synth_dir, cli_onnx, tmp_path) -> None:
    lib = ort_ops_library()
    if lib is None:
        skip_or_fail("libfcam_ort_ops.so not built (make kernels)")
    custom = tmp_path / "fcam_custom.onnx"
    assert (
        main(["export", "--checkpoint", str(checkpoint_dir), "--out", str(custom), "--postprocess", "custom-op"]) == 0
    )
    rc = main(
        [
            "parity",
            str(custom),
            "--data",
            str(synth_dir),
            "--json",
            str(tmp_path / "c.json"),
            "--plugins",
            str(lib),
            "--against",
            str(cli_onnx),
            "--checkpoint",
            str(checkpoint_dir),
        ]
    )
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
    prof.write_text(
        '[export]\npostprocess = "none"\nmethod = "cam"\ndynamic_batch = false\nopset = 19\n'
        '[engine]\nshapes = "1/1/1"\n'
    )
    out = tmp_path / "p.onnx"
    assert (
        main(
            ["export", "--checkpoint", str(checkpoint_dir), "--out", str(out), "--profile", str(prof), "--opset", "20"]
        )
        == 0
    )
    meta = read_onnx_metadata(out)
    assert (meta.postprocess, meta.method, meta.dynamic_batch, meta.opset) == ("none", "cam", False, 20)
    import onnx

    assert {o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")} == {20}
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["next"].startswith("fcam build-engine") and "--shapes 1/1/1" in printed["next"]


# ----------------------------------------------------------------------------------- the verdict can fail
# Two Polygraphy runners that return fixed outputs go through the real comparison (compare_runs): the verdict must
# fail when only mask pixels away from the threshold differ, or only the boxes, and pass when the only difference
# is at a tie pixel (|map - tau * max| <= TIE_ATOL).

_PARITY_SIZE = (8, 8)


class _FixedGraph:
    """Stands in for a LocalizationGraph: returns the same outputs for any input batch."""

    def __init__(self, outs: dict[str, np.ndarray]) -> None:
        self.outs = outs

    def eval(self) -> _FixedGraph:
        return self

    def __call__(self, x: object) -> tuple[object, ...]:
        import torch

        return tuple(torch.from_numpy(v.copy()) for v in self.outs.values())


def _fixed_outputs() -> dict[str, np.ndarray]:
    from fcam_deploy.export.parity import TIE_ATOL

    tau = 0.35
    m = np.full((1, *_PARITY_SIZE), 0.1, np.float32)
    m[0, 2:5, 2:5] = 0.9
    m[0, 0, 0] = 1.0  # max: threshold = tau
    m[0, 6, 6] = np.float32(tau + TIE_ATOL / 2)  # a tie pixel
    mask = (m > np.float32(tau) * m.max()).astype(np.uint8)
    boxes = np.full((1, 2, 4), -1, np.int32)
    boxes[0, 0], boxes[0, 1] = (2, 2, 4, 4), (0, 0, 0, 0)
    return {
        "logits": np.array([[0.1, 2.0, -1.0]], np.float32),
        "pred_class": np.array([1], np.int64),
        "map": m,
        "mask": mask,
        "boxes": boxes,
        "box_count": np.array([2], np.int32),
    }


def _verdict(ref: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict:
    from fcam_deploy.export.parity import _torch_runner_cls, compare_runs
    from tests._support.models import model_metadata

    meta = model_metadata("cam", "custom-op", size=_PARITY_SIZE, max_boxes=2)
    runner = _torch_runner_cls()
    summary, _ = compare_runs(
        [runner(_FixedGraph(ref), meta, "ref"), runner(_FixedGraph(other), meta, "other")],
        [np.zeros((1, *_PARITY_SIZE, 3), np.uint8)],
        meta,
    )
    return summary


def test_parity_verdict_passes_identical_outputs_and_tie_only_differences() -> None:
    ref = _fixed_outputs()
    assert _verdict(ref, _fixed_outputs())["passed"]
    tie = _fixed_outputs()
    tie["mask"][0, 6, 6] ^= 1  # only the tie pixel flips
    tie["boxes"][0, 1] = (6, 6, 6, 6)  # and the boxes follow it
    s = _verdict(ref, tie)
    c = s["comparisons"][0]
    assert s["passed"] and c["mask_pixels_differ"] == 1 and c["mask_pixels_differ_non_tie"] == 0
    assert c["box_images_differ"] == 1 and c["box_images_differ_non_tie"] == 0


def test_parity_verdict_fails_when_only_a_non_tie_mask_pixel_differs() -> None:
    ref, other = _fixed_outputs(), _fixed_outputs()
    other["mask"][0, 3, 3] ^= 1  # map 0.9, far above the threshold 0.35
    s = _verdict(ref, other)
    c = s["comparisons"][0]
    assert c["max_abs_diff"]["map"] == 0.0 and c["max_abs_diff"]["logits"] == 0.0
    assert c["mask_pixels_differ"] == 1 and c["mask_pixels_differ_non_tie"] == 1
    assert not c["passed"] and not s["passed"]


def test_parity_verdict_fails_when_only_the_boxes_differ() -> None:
    ref, other = _fixed_outputs(), _fixed_outputs()
    other["boxes"][0, 0] = (2, 2, 4, 5)
    s = _verdict(ref, other)
    c = s["comparisons"][0]
    assert c["mask_pixels_differ"] == 0 and c["max_abs_diff"]["map"] == 0.0
    assert c["box_images_differ"] == 1 and c["box_images_differ_non_tie"] == 1
    assert not c["passed"] and not s["passed"]
    count = _fixed_outputs()
    count["box_count"][0] = 1  # a dropped box is a difference too
    assert not _verdict(ref, count)["passed"]
