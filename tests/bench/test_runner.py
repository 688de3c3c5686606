"""End to end: a tiny suite runs every leg and writes a consistent results.json, report.md and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fcam_deploy.bench.report import write_report
from fcam_deploy.bench.runner import SCHEMA_VERSION, run_suite
from fcam_deploy.bench.suite import SuiteConfig


@pytest.mark.slow
def test_tiny_suite_end_to_end(tmp_path: Path) -> None:
    cfg = SuiteConfig(
        name="tiny",
        archs=("resnet18_s8",),
        methods=("cam", "gradcam", "fcam"),
        backends=("torch", "torch-autograd", "onnxruntime", "tensorrt"),
        batches=(1, 2),
        warmup=0,
        iters=1,
        e2e_image_size=(80, 60),
        localization_limit=0,
        parity_limit=3,
        synth={"size": 48, "classes": 2, "train": 6, "val": 0, "test": 4, "seed": 0},
        evaluator_maps=2,
        postprocess_maps=4,
        int8=True,
        int8_calibration_images=6,
        peers=("gradcam",),
        peers_on_random=True,
        peer_images=2,
    )
    doc = run_suite(cfg, tmp_path / "out", progress=False)
    written = write_report(doc, tmp_path / "out", command="pytest")
    assert {p.name for p in written} >= {"results.json", "report.md", "latency_vs_batch.png", "flops_per_method.png"}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and saved["manifest"]["torch"]
    recs = saved["records"]
    kinds = {r["kind"] for r in recs}
    assert {"latency", "flops", "parity", "skipped"} <= kinds
    # every requested (method, backend, batch) that applies has a latency record with its raw samples
    lat = {(r["method"], r["backend"], r["batch"], r["scope"]) for r in recs if r["kind"] == "latency"}
    for m in ("cam", "gradcam", "fcam"):
        for b in (1, 2):
            assert (m, "torch", b, "model") in lat and (m, "onnxruntime", b, "model") in lat
    assert ("gradcam", "torch-autograd", 1, "model") in lat and ("cam", "torch-autograd", 1, "model") not in lat
    assert ("fcam", "onnxruntime", 2, "end_to_end") in lat and ("fcam", "torch", 2, "end_to_end") in lat
    assert ("fcam", "onnxruntime-int8", 2, "end_to_end") in lat
    # end-to-end stage times come from inside predict; the ORT pipeline post-processes through the compiled core
    for r in recs:
        if r["kind"] == "latency" and r["scope"] == "end_to_end":
            st = r["stages"]
            assert 0.0 < st["postprocess_share"] < 1.0 and 0.0 < st["overhead_share"] < 1.0
            assert min(st["preprocess_ms"], st["inference_ms"], st["postprocess_ms"]) > 0
            assert st["preprocess_ms"] + st["inference_ms"] + st["postprocess_ms"] <= r["p50_ms"] * 1.5
            if r["backend"].startswith("onnxruntime"):
                assert r["postprocessor"] == "native_postprocess"
    # the peers compute the same maps as the exported closed form (after a final min-max)
    (peer,) = [r for r in recs if r["kind"] == "peers"]
    assert peer["map_max_abs_diff_vs_grad_cam"] < 1e-4 and peer["map_max_abs_diff_vs_torchcam"] < 1e-4
    assert peer["ort_ms"] > 0 and peer["grad_cam_ms"] > 0 and peer["torchcam_ms"] > 0
    for r in recs:
        if r["kind"] == "latency":
            assert len(r["samples_ms"]) == 1 and r["p50_ms"] > 0
    # FLOPs counted twice, independently, agree within 2 %; the autograd path costs at least the forward
    for r in recs:
        if r["kind"] == "flops" and "onnx_gmac" in r:
            assert r["torch_onnx_rel_diff"] < 0.02
        if r["kind"] == "flops" and "autograd_gmac" in r:
            assert r["autograd_gmac"] >= r["torch_gmac"]
    assert all(r["passed"] for r in recs if r["kind"] == "parity")
    # TensorRT is absent here: recorded as skipped with a reason, never silently dropped
    assert any(r["kind"] == "skipped" and "tensorrt" in r["what"] for r in recs)
    rat = saved["ratios"]
    assert rat["evaluator_speedup"].get("identical", True) is True
    assert "fcam_vs_gradient_cams" in rat and "ort_vs_torch_end_to_end" in rat
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Headline ratios" in md and "| gradcam |" in md and "Not measured here" in md
