"""kernels/gpu/gpu_check.py, the one-command GPU verification, exercised without a GPU.

Its CPU mode runs the same hard-input generators and exact comparisons (C++ CPU launcher vs the NumPy reference) as
the GPU run does for the CUDA op; the report writer and the time-boxed subprocess runner are the GPU run's own code.
So the script cannot rot between GPU leases without these tests noticing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from fcam_deploy.ops import native_status

SCRIPT = Path(__file__).resolve().parents[2] / "kernels" / "gpu" / "gpu_check.py"
needs_ext = pytest.mark.skipif(not native_status().available, reason=f"torch extension: {native_status().reason}")


def _mod() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fcam_gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module while the file executes
    spec.loader.exec_module(mod)
    return mod


def test_hard_inputs_have_the_properties_the_issue_lists() -> None:
    from scipy import ndimage

    g = _mod()
    eight = np.ones((3, 3), int)
    for kind in ("checkerboard", "serpentine"):
        _, n = ndimage.label(g.binary_pattern(kind, 40), structure=eight)
        assert n == 1, kind  # one component spanning the image
    serp = g.binary_pattern("serpentine", 40)
    assert serp[1:4].sum(axis=1).tolist() == [1, 1, 1]  # one pixel wide between the rows: a single long chain
    sparse = g.binary_pattern("sparse", 40)
    lab, n = ndimage.label(sparse, structure=eight)
    assert n >= 16 and set(np.bincount(lab.ravel())[1:]) == {1}  # >= K equal-size components: the tie rule decides
    for small, sm in ((True, 16), (False, 132)):
        cases = {c.name: c for c in g.hard_cases(small, sm)}
        names = " | ".join(cases)
        for needle in ("checkerboard", "serpentine", "sparse pixels", "-0.0", "NaN", "h or w = 1"):
            assert needle in names
        assert any(c.maps.shape[0] > sm for c in cases.values())  # N above the SM count
        assert any(np.isnan(c.maps).any() for c in cases.values())
        assert any((c.maps == 0).any() and np.signbit(c.maps[c.maps == 0]).any() for c in cases.values())
        assert any(c.maps.shape[1] == 1 for c in cases.values()) and any(c.maps.shape[2] == 1 for c in cases.values())
        assert any(k >= 16 for c in cases.values() for (_, _, _, k, _) in c.combos if "sparse" in c.name)
        if not small:
            assert any(c.out_h == c.out_w == 2048 and c.maps.shape[0] == 1 for c in cases.values())  # 1x2048x2048


def _cpu_ctx(g: ModuleType, tmp_path: Path) -> Any:
    return g.Context("cpu", True, tmp_path / "out", tmp_path / "work")


@needs_ext
def test_cpu_mode_exact_check_passes() -> None:
    g = _mod()
    res = g.run_check_inline(next(c for c in g.CHECKS if c.name == "postprocess-exact"), _cpu_ctx(g, Path("/tmp")))
    assert res.status == "pass", res.data.get("failures") or res.reason
    assert res.data["cases"] and sum(c["vs_reference"] for c in res.data["cases"]) >= 60
    # every GPU check is recorded as skipped in CPU mode, with the reason
    gpu_only = next(c for c in g.CHECKS if c.name == "cuda-launcher-test")
    skipped = g.run_check_inline(gpu_only, _cpu_ctx(g, Path("/tmp")))
    assert skipped.status == "skip" and "CPU mode" in skipped.reason


@needs_ext
@pytest.mark.parametrize("corrupt", ["mask", "signed-zero", "count"])
def test_exact_check_catches_a_single_wrong_element(monkeypatch: pytest.MonkeyPatch, corrupt: str) -> None:
    """A launcher that is wrong in one element (or writes -0.0 instead of +0.0) fails the check, naming the case."""
    import torch

    g = _mod()
    real = g._require_native(False)

    def bad_op(maps: torch.Tensor, out_h: int, out_w: int, *args: Any) -> tuple[torch.Tensor, ...]:
        full, mask, boxes, count = (t.clone() for t in real(maps, out_h, out_w, *args))
        if maps.shape[1:] == (9, 11):  # only the -0.0 case
            if corrupt == "mask":
                mask.view(-1)[3] ^= 1
            elif corrupt == "signed-zero":
                full[full == 0] = -0.0
            else:
                count[0] += 1
        return full, mask, boxes, count

    monkeypatch.setattr(g, "_require_native", lambda cuda: bad_op)
    res = g.run_check_inline(next(c for c in g.CHECKS if c.name == "postprocess-exact"), _cpu_ctx(g, Path("/tmp")))
    assert res.status == "fail"
    want = {"mask": "mask:", "signed-zero": "full:", "count": "count:"}[corrupt]
    assert res.data["failures"] and all("-0.0" in f and want in f for f in res.data["failures"])


def test_report_writer(tmp_path: Path) -> None:
    g = _mod()
    results = [
        g.CheckResult(
            "postprocess-exact",
            "correctness",
            "pass",
            3.2,
            "",
            {
                "ok": True,
                "summary": "12 exact comparisons",
                "cases": [
                    {
                        "case": "checkerboard",
                        "shape": [1, 8, 8],
                        "out": [8, 8],
                        "runs": 2,
                        "vs_cpu": 2,
                        "vs_reference": 2,
                        "mismatches": 0,
                    }
                ],
            },
        ),
        g.CheckResult(
            "postprocess-timing",
            "timing",
            "pass",
            9.0,
            "",
            {
                "ok": True,
                "summary": "t",
                "copy_GBps": 3900.0,
                "note": "n",
                "rows": [
                    {
                        "case": "N=64, 28x28 -> 224x224",
                        "op_ms": 0.2,
                        "op_protocol_ms": 0.4,
                        "torch_ops_ms": 0.3,
                        "op_vs_torch_ops": 1.5,
                        "op_effective_GBps": 100.0,
                        "pct_of_copy_bw": 2.6,
                    }
                ],
            },
        ),
        g.CheckResult(
            "postprocess-hard-input-timing",
            "timing",
            "timeout",
            75.0,
            "time box of 75 s exceeded",
            {
                "summary": "time box of 75 s exceeded; partial results kept",
                "rows": [
                    {"case": "serpentine 1024x1024, K=1", "op_ms": 1500.0, "vs_smooth_map": 900.0},
                    {
                        "case": "serpentine 2048x2048, K=1",
                        "op_ms": None,
                        "vs_smooth_map": None,
                        "note": "not timed: the smaller size took > 1 s per call",
                    },
                ],
            },
        ),
        g.CheckResult(
            "sanitizer-memcheck",
            "sanitizer",
            "fail",
            20.0,
            "memcheck: exit 97",
            {"ok": False, "log_tail": "========= Invalid __global__ read of size 4"},
        ),
        g.CheckResult("sanitizer-racecheck", "sanitizer", "skip", 0.0, "compute-sanitizer not found"),
        g.CheckResult("fcam-e2e-cuda-graphs", "timing", "timeout", 150.0, "time box of 150 s exceeded"),
        g.CheckResult(
            "lattice-filter-cuda-vs-cpu",
            "correctness",
            "error",
            1.0,
            "RuntimeError: boom",
            {"traceback": "Traceback ...RuntimeError: boom"},
        ),
    ]
    env = {"torch": "2.x", "torch_cuda": "13.0", "gpu": {"name": "NVIDIA H200", "capability": "9.0", "sms": 132}}
    jpath, mpath = g.write_report(results, tmp_path / "r", mode="cuda", env=env, total_s=201.0, time_limit_s=540.0)
    doc = json.loads(jpath.read_text())
    assert doc["schema_version"] == 1 and doc["ok"] is False and doc["mode"] == "cuda"
    assert doc["counts"] == {"pass": 2, "fail": 1, "skip": 1, "error": 1, "timeout": 2}
    assert [c["name"] for c in doc["checks"]] == [r.name for r in results]
    md = mpath.read_text()
    assert "NVIDIA H200 (sm_90, 132 SMs)" in md and "**FAILURES**" in md
    assert "| sanitizer-memcheck | sanitizer | fail | 20.0 | memcheck: exit 97 |" in md
    assert "| checkerboard | 1x8x8 | 8x8 | 2 | 2 | 2 | 0 |" in md
    assert "1.50x" in md and "3900 GB/s" in md and "| serpentine 1024x1024, K=1 | 1500.000 | 900.0x |" in md
    assert "| serpentine 2048x2048, K=1 | - | not timed: the smaller size took > 1 s per call |" in md
    assert "Invalid __global__ read" in md and "RuntimeError: boom" in md  # failure details are in the report
    assert "18.5 ms" in md and "37.4 ms" in md  # the paper's F-CAM vs gradient-CAM cost next to the measurement
    assert "Not measured: time box of 150 s exceeded" in md


@needs_ext
def test_cli_cpu_mode_runs_checks_in_time_boxed_processes(tmp_path: Path) -> None:
    """The command itself: every check in its own process, results merged, a time box turned into 'timeout'."""
    out = tmp_path / "ok"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--small",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "w"),
            "--only",
            "postprocess-exact",
            "cuda-launcher-test",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "gpu_check.json").read_text())
    status = {c["name"]: c["status"] for c in doc["checks"]}
    assert status == {"postprocess-exact": "pass", "cuda-launcher-test": "skip"} and doc["ok"]
    assert doc["checks"][0]["seconds"] > 0 and (out / "gpu_check.md").is_file()
    out2 = tmp_path / "slow"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--small",
            "--out",
            str(out2),
            "--work",
            str(tmp_path / "w"),
            "--only",
            "postprocess-exact",
            "--budget-scale",
            "0.002",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((out2 / "gpu_check.json").read_text())
    assert doc["checks"][0]["status"] == "timeout" and "time box" in doc["checks"][0]["reason"]
    assert "FAILED: postprocess-exact" in proc.stdout


def test_time_box_keeps_partial_results(tmp_path: Path) -> None:
    """A check killed by its time box is recorded as 'timeout' with what it had saved so far."""
    g = _mod()
    check = next(c for c in g.CHECKS if c.name == "postprocess-hard-input-timing")
    result = tmp_path / "r.json"
    Path(str(result) + ".partial").write_text(json.dumps({"ok": False, "rows": [{"case": "a", "op_ms": 1.0}]}))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    res = g._collect_child(check, proc, result, g.time.monotonic(), 1.0)
    assert proc.poll() is not None  # killed
    assert res.status == "timeout" and res.data["rows"] == [{"case": "a", "op_ms": 1.0}] and "ok" not in res.data
    assert "partial results kept" in res.data["summary"] and 0.9 <= res.seconds < 30
    # a child that exits without writing a result (a crash) is an error, not a pass
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(-11 % 256)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    res = g._collect_child(check, proc, tmp_path / "none.json", g.time.monotonic(), 30.0)
    assert res.status == "error" and "without a result" in res.reason
