"""Importing the data modules does no heavy work: torch, OpenCV and PIL load only when a function needs them."""

from __future__ import annotations

import subprocess
import sys


def test_light_imports() -> None:
    code = (
        "import sys\n"
        "import fcam_deploy.data, fcam_deploy.data.synth, fcam_deploy.data.metadata, fcam_deploy.data.images\n"
        "heavy = [m for m in ('torch', 'cv2', 'PIL', 'torchvision') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from fcam_deploy.data import SynthConfig, open_dataset\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
