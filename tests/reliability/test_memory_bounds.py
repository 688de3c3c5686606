"""The ``mem`` cases of the bad-input table (inputs of 1 MB or less that declare huge images, maps or model
inputs) run in one subprocess under ``RLIMIT_AS`` = its address space after warm-up + 1 GiB: each must end with
its typed error or its correct result, without a traceback, with no existing file changed. A case that tried to
allocate more would hit the limit (MemoryError) and fail here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.files import snapshot
from tests.reliability.cases import CASES, Ctx
from tests.reliability.test_bad_inputs import check_outcome

BUDGET = 1 << 30
REPO = Path(__file__).resolve().parents[2]
_MEM = [c for c in CASES if c.mem]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read the address space")
def test_small_inputs_never_allocate_more_than_1_gib(
    tmp_path: Path,
    onnx_model,
    checkpoint_dir: Path,  # type: ignore[no-untyped-def]
    wsol_set: Path,
    eval_maps: Path,
    photo: Path,
) -> None:
    assert len(_MEM) >= 8
    onnx = onnx_model("fcam", "onnx")
    ctxs, specs, befores = {}, [], {}
    for c in _MEM:
        d = tmp_path / c.id
        d.mkdir()
        ctx = Ctx(dir=d, onnx=onnx, ckpt=checkpoint_dir, data=wsol_set, maps=eval_maps, photo=photo)
        argv = c.build(ctx)
        inputs = [p for p in d.rglob("*") if p.is_file()]
        assert all(p.stat().st_size <= 1 << 20 for p in inputs if p.suffix in (".png", ".jpg", ".npy", ".json")), c.id
        ctxs[c.id] = (ctx, argv)
        befores[c.id] = snapshot(d, *ctx.shared())
        specs.append({"id": c.id, "argv": argv})
    warm = tmp_path / "warmup"
    warmup = [
        ["predict", str(onnx), str(photo), "--out", str(warm / "p")],
        ["predict", str(checkpoint_dir), str(photo), "--out", str(warm / "c")],
        [
            "score",
            "--maps",
            str(eval_maps),
            "--metadata",
            str(wsol_set),
            "--split",
            "test",
            "--json",
            str(warm / "s.json"),
            "--no-progress",
        ],
        [
            "eval",
            "--checkpoint",
            str(checkpoint_dir),
            "--data",
            str(wsol_set),
            "--split",
            "test",
            "--json",
            str(warm / "e.json"),
            "--no-progress",
            "--limit",
            "1",
        ],
    ]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"budget_bytes": BUDGET, "warmup": warmup, "cases": specs}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "MALLOC_ARENA_MAX": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability._memdriver", str(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert proc.returncode == 0, f"driver exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = {r["id"]: r for r in lines if "id" in r}
    assert set(results) == {c.id for c in _MEM}, proc.stderr[-3000:]
    peaks = {}
    for c in _MEM:
        ctx, argv = ctxs[c.id]
        r = results[c.id]
        check_outcome(c, ctx, argv, r["rc"], r["err"], befores[c.id])
        peaks[c.id] = r["vm_peak_over_base"]
    # the report (pytest -rA / -s): the largest address-space growth over the warmed-up process
    print(json.dumps({"vm_peak_over_base_mib": {k: round(v / 2**20) for k, v in peaks.items()}}, indent=1))
    assert max(peaks.values()) <= BUDGET
