"""`fcam demo --quick`: every step runs and writes what the README promises (quality is not asserted), and
`fcam eval` on the demo's checkpoint and test split reproduces the demo's figures exactly (one number per model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    from fcam_deploy.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    for name in ("report.md", "results.json", "overlays.png", "model/config.json", "model/model.safetensors"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    for method in ("cam", "fcam"):
        for k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP"):
            v = res["methods"][method][k]
            assert isinstance(v, float) and 0.0 <= v <= 100.0, (method, k, v)
    assert 0.0 <= res["baselines"]["whole_image"]["PxAP"] <= 100.0
    assert res["timings"]["total_s"] > 0
    # finite losses in every step record of both stages
    for stage in ("classifier", "fcam"):
        recs = [json.loads(x) for x in (out / "runs" / stage / "log.jsonl").read_text().splitlines()]
        steps = [r for r in recs if r["type"] == "step"]
        assert steps and all(math.isfinite(r["loss"]) for r in steps)
        assert any(r["type"] == "val" for r in recs)
    # the F-CAM checkpoint is usable: loads, has a threshold, produces a (N, H, W) map in [0, 1]
    import torch

    from fcam_deploy.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(out / "model")
    assert meta.kind == "fcam" and meta.threshold is not None and 0.0 <= meta.threshold <= 1.0
    h, w = meta.input_size
    with torch.no_grad():
        o = model(torch.randn(2, 3, h, w))
    assert o.fg_prob.shape == (2, h, w) and o.seg_logits.shape == (2, 2, h, w)
    assert float(o.fg_prob.min()) >= 0.0 and float(o.fg_prob.max()) <= 1.0
    assert "F-CAM" in (out / "report.md").read_text()
    # `fcam eval` (the model at the checkpoint's input size, maps to the 224 frame) gives the demo's numbers exactly
    assert res["input_size"] == [h, w] and h != 224
    for method in ("cam", "fcam"):
        js = tmp_path / f"eval_{method}.json"
        assert (
            main(
                [
                    "eval",
                    "--checkpoint",
                    str(out / "model"),
                    "--data",
                    str(out / "data"),
                    "--split",
                    "test",
                    "--method",
                    method,
                    "--json",
                    str(js),
                    "--no-progress",
                ]
            )
            == 0
        )
        ev = json.loads(js.read_text())
        assert ev["input_size"] == [h, w]
        for k in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP"):
            assert ev[k] == res["methods"][method][k], (method, k, ev[k], res["methods"][method][k])
        if method == "cam":
            assert ev["classification"]["top1"] == res["classifier_top1"]
