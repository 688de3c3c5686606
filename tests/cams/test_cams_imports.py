"""Importing the CAM package does no work and pulls in no optional dependency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_is_lazy_about_optional_dependencies() -> None:
    code = (
        "import sys, fcam_deploy.cams as c; c.compute_maps; "
        "bad = [m for m in ('cv2', 'onnxruntime', 'matplotlib', 'pytorch_grad_cam', 'safetensors', 'onnx') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
