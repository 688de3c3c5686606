"""Importing fcam_deploy (and building the whole CLI parser) does no heavy work."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("onnxruntime", "tensorrt", "matplotlib", "cv2", "onnx", "polygraphy")


def _imported_after(code: str) -> set[str]:
    probe = code + f"\nimport sys\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_import_package_is_light() -> None:
    assert _imported_after("import fcam_deploy") == set()


def test_cli_parser_is_light() -> None:
    # `fcam --help` must stay fast: every command module imports its heavy dependencies inside handlers.
    assert _imported_after("from fcam_deploy.cli import build_parser\nbuild_parser()") == set()


def test_version_and_lazy_attributes() -> None:
    import fcam_deploy

    assert isinstance(fcam_deploy.__version__, str) and fcam_deploy.__version__
    assert fcam_deploy.errors.FcamError.__name__ == "FcamError"
    try:
        fcam_deploy.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute did not raise")
