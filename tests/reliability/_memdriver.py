"""Runs ``fcam`` CLI cases in one process under an address-space limit and prints one JSON line per case.

Usage: ``python -m tests.reliability._memdriver SPEC.json`` with SPEC ``{"budget_bytes": N, "warmup": [argv...],
"cases": [{"id": ..., "argv": [...]}, ...]}``. The libraries the commands load lazily are imported and every
kind of command is run once on valid input first (warm-up), so library code and JIT caches are not counted; then
``RLIMIT_AS`` is set to the current address-space size plus ``budget_bytes`` and the cases run. An allocation
beyond the budget raises ``MemoryError`` (or kills the process), which the test reports as a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import traceback
from typing import Any


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _run(fcam: Any, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = int(fcam(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
        except BaseException:  # noqa: BLE001 - reported to the test as a traceback
            rc = -1
            err.write("Traceback (caught by the driver):\n" + traceback.format_exc())
    return rc, err.getvalue()


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401

    from fcam_deploy.cli import main as fcam

    for argv in spec["warmup"]:
        rc, err = _run(fcam, argv)
        if rc != 0:
            print(json.dumps({"warmup_failed": argv, "rc": rc, "err": err[-3000:]}), flush=True)
            return 3
    base = _status_bytes("VmSize")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (base + int(spec["budget_bytes"]), hard))
    print(json.dumps({"base_vm_bytes": base}), flush=True)
    for case in spec["cases"]:
        rc, err = _run(fcam, case["argv"])
        print(
            json.dumps(
                {"id": case["id"], "rc": rc, "err": err[-4000:], "vm_peak_over_base": _status_bytes("VmPeak") - base}
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
