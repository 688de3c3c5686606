"""kill -9 a real `fcam train` process mid-epoch, resume, finish; compare with an uninterrupted run.

Precise claim tested: a run resumed from the snapshot taken after optimizer step s (the one ``state/LATEST``
names when the process was killed) ends with model weights bit-identical to a run that was never interrupted
(same machine, same thread count), and every file under its final name is complete at any time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ARGS = [
    "--config",
    "demo",
    "--arch",
    "efficientnet_lite0_s8",
    "--input-size",
    "32",
    "--set",
    "resize_size=36",
    "--epochs",
    "3",
    "--batch-size",
    "4",
    "--save-every-steps",
    "2",
    "--no-progress",
]


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fcam_deploy",
        "train",
        "classifier",
        "--data",
        str(data),
        "--out",
        str(out),
        *ARGS,
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _assert_all_files_complete(out: Path) -> None:
    from fcam_deploy.models.checkpoint import load_checkpoint

    for p in out.rglob("*"):
        if any(part.startswith(".tmp-") for part in p.relative_to(out).parts) or not p.is_file():
            continue
        if p.suffix == ".safetensors":
            load_file(str(p))
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.name == "log.jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
    for ck in ("best", "last"):
        if (out / ck / "config.json").exists():
            load_checkpoint(out / ck)
    latest = out / "state" / "LATEST"
    if latest.exists():
        snap = out / "state" / latest.read_text().strip()
        assert (snap / "state.json").is_file() and (snap / "state.safetensors").is_file()


@pytest.mark.slow
def test_kill9_resume_equals_uninterrupted(tiny_dataset: Path, tmp_path: Path) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_cmd(tiny_dataset, ref), check=True, env=_env(), capture_output=True, timeout=600)

    proc = subprocess.Popen(_cmd(tiny_dataset, run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        latest = run / "state" / "LATEST"
        if latest.exists():
            name = latest.read_text().strip()
            # mid-epoch snapshot of epoch index 1 (second epoch): batch-in-epoch > 0
            if "-e0001b" in name and not name.endswith("b000000"):
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = name
                break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed_at is not None, f"never saw a mid-epoch snapshot; rc={proc.returncode} {proc.stderr.read()[-500:]!r}"
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    _assert_all_files_complete(run)

    # Without --resume an existing run is refused (typed error -> exit code 2).
    r = subprocess.run(_cmd(tiny_dataset, run), check=False, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "--resume" in r.stderr

    subprocess.run(_cmd(tiny_dataset, run, "--resume"), check=True, env=_env(), capture_output=True, timeout=600)
    _assert_all_files_complete(run)
    assert not any(p.name.startswith(".tmp-") for p in run.rglob("*"))
    a = load_file(str(ref / "last" / "model.safetensors"))
    b = load_file(str(run / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The log holds each step exactly once, in order, with finite losses.
    steps = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    step_ids = [s["step"] for s in steps if s["type"] == "step"]
    assert step_ids == list(range(1, len(step_ids) + 1))
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps if s["type"] == "step")
    ref_sum = json.loads((ref / "summary.json").read_text())
    run_sum = json.loads((run / "summary.json").read_text())
    assert ref_sum["best_epoch"] == run_sum["best_epoch"] and ref_sum["steps"] == run_sum["steps"]
