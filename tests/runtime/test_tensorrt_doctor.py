"""`fcam doctor` on this machine (ORT present, TensorRT/GPU absent) and its library checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fcam_deploy.cli import doctor, main
from tests._support.native import skip_or_fail


def _report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, dict]]:
    rc = main(["doctor", "--json", *argv])
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == rc
    return rc, {c["name"]: c for c in data["checks"]}


def test_doctor_reports_this_machine(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort
    import torch

    monkeypatch.delenv(doctor.TRT_PLUGINS_ENV, raising=False)
    monkeypatch.delenv(doctor.ORT_OPS_ENV, raising=False)
    rc, checks = _report(capsys)
    assert checks["onnxruntime"]["status"] == "ok"
    assert checks["onnxruntime"]["info"]["providers"] == ort.get_available_providers()
    assert "CPUExecutionProvider" in checks["onnxruntime"]["info"]["providers"]
    assert checks["torch"]["info"]["version"] == torch.__version__
    from fcam_deploy.export.tensorrt import tensorrt_unavailable_reason

    has_trt = tensorrt_unavailable_reason() is None  # the bindings, not just an importable `tensorrt` namespace
    assert checks["tensorrt"]["status"] == ("ok" if has_trt else "missing")
    if not has_trt:
        assert checks["tensorrt-engine"]["status"] == "missing"
        assert rc == 0  # a missing optional leg is not an error
        rc_strict, _ = _report(capsys, "--strict")
        assert rc_strict == 1
    assert checks["trt-plugins"]["status"] == "missing" and "not searched" in checks["trt-plugins"]["detail"]
    assert checks["ort-custom-ops"]["status"] == "missing"


def test_doctor_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    main(["doctor", "--no-engine"])
    out = capsys.readouterr().out
    assert (
        "onnxruntime" in out
        and "tensorrt-engine  skipped" in out
        and out.strip().splitlines()[-1].startswith("doctor:")
    )


def test_doctor_fails_on_broken_explicit_libraries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_elf = tmp_path / "libfcam_trt_plugins.so"
    not_elf.write_bytes(b"definitely not ELF")
    rc, checks = _report(capsys, "--plugins", str(not_elf), "--ort-ops", str(tmp_path / "missing.so"), "--no-engine")
    assert rc == 1
    assert checks["trt-plugins"]["status"] == "fail" and "dlopen failed" in checks["trt-plugins"]["detail"]
    assert checks["ort-custom-ops"]["status"] == "fail" and "does not exist" in checks["ort-custom-ops"]["detail"]


def test_doctor_reads_env_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(doctor.TRT_PLUGINS_ENV, str(tmp_path / "env_plugins.so"))
    rc, checks = _report(capsys, "--no-engine")
    assert rc == 1 and checks["trt-plugins"]["info"]["source"] == f"${doctor.TRT_PLUGINS_ENV}"


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to make test shared libraries")
def test_doctor_plugin_symbol_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A library exporting TensorRT's dynamic plugin entry points passes dlopen + symbol checks; one without fails."""
    good_c = tmp_path / "good.c"
    good_c.write_text("void* getCreators(int* n){*n=0;return 0;}\nvoid setLoggerFinder(void* f){(void)f;}\n")
    bad_c = tmp_path / "bad.c"
    bad_c.write_text("int something(void){return 1;}\n")
    for src in (good_c, bad_c):
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(src.with_suffix(".so")), str(src)], check=True)
    rc, checks = _report(capsys, "--plugins", str(tmp_path / "good.so"), "--no-engine")
    assert checks["trt-plugins"]["status"] == "ok" and checks["trt-plugins"]["info"]["symbols"] == {
        "getCreators": True,
        "setLoggerFinder": True,
    }
    rc, checks = _report(capsys, "--plugins", str(tmp_path / "bad.so"), "--no-engine")
    assert rc == 1 and checks["trt-plugins"]["status"] == "fail" and "lacks" in checks["trt-plugins"]["detail"]


def test_doctor_ort_ops_and_torch_extension(capsys: pytest.CaptureFixture[str]) -> None:
    """The custom-op library `make kernels` builds registers with ORT; the extension line mirrors ops.native_status."""
    from fcam_deploy import ops

    _, checks = _report(capsys, "--no-engine")
    status = ops.native_status()
    assert checks["torch-extension"]["status"] == ("ok" if status.available else "missing")
    assert checks["torch-extension"]["info"]["cuda_kernel"] == status.cuda
    lib = ops.ort_library_path()
    if lib is None:
        skip_or_fail("libfcam_ort_ops.so not built (make kernels)")
    assert str(lib) in checks["ort-custom-ops"]["detail"]  # hinted, not loaded: the check stays 'missing'
    assert checks["ort-custom-ops"]["status"] == "missing"
    _, checks = _report(capsys, "--ort-ops", str(lib), "--no-engine")
    assert checks["ort-custom-ops"]["status"] == "ok"
