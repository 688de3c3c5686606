"""The C++ embedding (export/cpp): build it with export/cpp/build.sh, run the fcam_localize sample app and check that
its results are the Python runtime's (fcam_deploy.runtime.Localizer, onnxruntime backend) bit for bit on the same
image files — logits, class, map, mask and boxes exactly, the score exactly against an independent libm oracle —;
check the probe cases of issue 12 (decoder bombs and truncation, metadata, devices, hygiene of the shared library,
the API a C++ user expects), the installed package through find_package, and the resize against Pillow.

Fixtures and helpers: tests/cpp/conftest.py. FCAM_REQUIRE_CPP=1 turns a missing toolchain into a failure (CI).
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_PRECISION_BITS = 22  # Pillow Resample.c: 32 - 8 - 2


# ---- independent oracles ----------------------------------------------------------------------------------------
def _pillow_coeffs(in_size: int, out_size: int) -> list[tuple[int, list[int]]]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (src/libImaging/Resample.c)."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    out = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - fs + 0.5), 0)
        xmax = min(int(center + fs + 0.5), in_size) - xmin
        w = [max(0.0, 1.0 - abs((x + xmin - center + 0.5) / fs)) for x in range(xmax)]
        total = sum(w)
        w = [v / total if total != 0.0 else v for v in w]
        out.append(
            (
                xmin,
                [int(v * (1 << _PRECISION_BITS) + (0.5 if v >= 0 else -0.5)) for v in w],
            )
        )
    return out


def _pillow_pass(a: np.ndarray, out_w: int) -> np.ndarray:
    """One 8-bit horizontal pass of a (H, W, 3) uint8 image to width ``out_w`` (fixed point, rounding, clip)."""
    out = np.empty((a.shape[0], out_w, 3), np.uint8)
    for xx, (xmin, k) in enumerate(_pillow_coeffs(a.shape[1], out_w)):
        acc = np.full((a.shape[0], 3), 1 << (_PRECISION_BITS - 1), np.int64)
        for x, kx in enumerate(k):
            acc += a[:, xmin + x, :].astype(np.int64) * kx
        out[:, xx, :] = np.clip(acc >> _PRECISION_BITS, 0, 255)
    return out


def pillow_bilinear(a: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Independent NumPy port of Pillow 13's bilinear resize. Pass order (Pillow 13.0 Resample.c,
    ImagingResampleInner): vertical first when the height shrinks by more than twice as many pixels as the width."""
    h, w = a.shape[:2]

    def horizontal(x: np.ndarray) -> np.ndarray:
        return _pillow_pass(x, out_w) if x.shape[1] != out_w else x

    def vertical(x: np.ndarray) -> np.ndarray:
        return _pillow_pass(x.transpose(1, 0, 2), out_h).transpose(1, 0, 2) if x.shape[0] != out_h else x

    vertical_first = (h - out_h) > 0 and (h - out_h) > 2 * (w - out_w)
    return np.ascontiguousarray(horizontal(vertical(a)) if vertical_first else vertical(horizontal(a)))


def _numpy_pairwise_sum(v: list[float]) -> float:
    """NumPy's float64 pairwise summation (numpy/_core/src/umath/loops_utils.h.src), written out in Python."""
    n = len(v)
    if n < 8:
        r = -0.0
        for x in v:
            r += x
        return r
    if n <= 128:
        acc = list(v[:8])
        i = 8
        while i < n - n % 8:
            for j in range(8):
                acc[j] += v[i + j]
            i += 8
        res = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for x in v[i:]:
            res += x
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _numpy_pairwise_sum(v[:n2]) + _numpy_pairwise_sum(v[n2:])


def softmax_score_oracle(logits: np.ndarray, cls: int) -> float:
    """exp(z_c) / sum(exp(z)), z = logits - max in float64, with libm's exp (math.exp) and NumPy's summation order."""
    mx = float(np.max(logits))
    z = [math.exp(float(v) - mx) for v in logits]
    return z[cls] / _numpy_pairwise_sum(z)


def test_pairwise_sum_oracle_is_numpys() -> None:
    rng = np.random.default_rng(7)
    for k in [1, 2, 3, 7, 8, 9, 16, 17, 100, 128, 129, 200, 1000]:
        v = np.exp(rng.uniform(-30, 0, k))
        assert _numpy_pairwise_sum([float(x) for x in v]) == float(v[None, :].sum(axis=1)[0]), k


# ---- comparison against the Python runtime ------------------------------------------------------------------------
def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _compare(
    tools: Any,
    install: Path,
    model: Path,
    images: list[Path],
    tmp: Path,
    *extra: str,
    batch: bool = False,
    **load_kw: Any,
) -> dict[str, int]:
    """fcam_localize == Localizer.predict bit for bit on every image; returns counts that show the comparison was
    not vacuous (images with boxes, masks with both values)."""
    from PIL import Image

    from fcam_deploy.runtime import Localizer

    run = tools.localize_json(install, model, images, tmp / "maps", *extra, *(["--batch"] if batch else []))
    loc = Localizer.load(model, backend="onnxruntime", **load_kw)
    pil = [Image.open(p) for p in images]
    refs = loc.predict(pil) if batch else [loc.predict(im) for im in pil]
    counts = {"images": 0, "with_boxes": 0, "mixed_mask": 0, "python_score_exact": 0}
    for got, cmap, cmask, ref, path in zip(run.results, run.maps, run.masks, refs, images, strict=True):
        assert got["image"] == str(path)
        assert got["size"] == list(ref.size), path
        assert np.array_equal(_bits(np.array(got["logits"], np.float32)), _bits(ref.logits)), path
        assert got["class_index"] == ref.class_index and got["class_name"] == ref.class_name, path
        # the score: exactly the libm oracle on the (bit-equal) logits; the Python runtime computes it with
        # np.exp, whose SIMD code (AVX512F here) may round the last bit differently from libm's exp
        assert got["score"] == softmax_score_oracle(ref.logits, ref.class_index), path
        assert got["score"] == pytest.approx(ref.score, rel=4e-16, abs=0), path
        counts["python_score_exact"] += got["score"] == ref.score
        assert cmap.dtype == np.float32 and cmap.shape == ref.map.shape, path
        assert np.array_equal(_bits(cmap), _bits(ref.map)), (
            path,
            int((_bits(cmap) != _bits(ref.map)).sum()),
        )
        assert cmask.dtype == np.uint8 and np.array_equal(cmask.astype(bool), ref.mask) and cmask.max() <= 1, path
        assert [tuple(b) for b in got["boxes"]] == [tuple(b) for b in ref.boxes], path
        assert got["mask_pixels"] == int(ref.mask.sum()), path
        assert got["tau"] == ref.tau
        counts["images"] += 1
        counts["with_boxes"] += bool(ref.boxes)
        counts["mixed_mask"] += 0 < int(ref.mask.sum()) < ref.mask.size
    return counts


def test_probe_graph_matches_python_runtime(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    counts = _compare(cpp_tools, install_dir, probe_model, images, tmp_path / "single")
    assert counts["with_boxes"] >= len(images) - 2 and counts["mixed_mask"] >= len(images) - 2, counts
    counts = _compare(cpp_tools, install_dir, probe_model, images, tmp_path / "batch", batch=True)
    assert counts["images"] == len(images)


def test_results_identical_for_every_thread_budget(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    runs = [
        cpp_tools.localize_json(
            install_dir,
            probe_model,
            images[:8],
            tmp_path / f"t{t}",
            "--batch",
            "--threads",
            str(t),
        )
        for t in (1, 3)
    ]
    assert [r["threads"] for r in runs[0].results] == [1] * 8 and runs[1].results[0]["threads"] == 3
    for a, b in zip(runs[0].results, runs[1].results, strict=True):
        assert {k: v for k, v in a.items() if k != "threads"} == {k: v for k, v in b.items() if k != "threads"}
    for m1, m3 in zip(runs[0].maps + runs[0].masks, runs[1].maps + runs[1].masks, strict=True):
        assert np.array_equal(m1, m3)


@pytest.mark.slow
def test_exported_fcam_graph_matches_python_runtime(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    exported_fcam: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    counts = _compare(cpp_tools, install_dir, exported_fcam("onnx"), images, tmp_path)
    assert counts["with_boxes"] >= 6 and counts["mixed_mask"] >= 6, counts


def _ort_ops_library() -> Path | None:
    env = os.environ.get("FCAM_ORT_OPS")
    if env:
        return Path(env)
    built = Path(__file__).resolve().parents[2] / "kernels" / "build" / "libfcam_ort_ops.so"
    return built if built.is_file() else None


@pytest.mark.slow
def test_custom_op_graph(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    exported_fcam: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """A graph with the fused fcam::CamPostprocess node: without the library a typed error naming FCAM_ORT_OPS; a
    bogus FCAM_ORT_OPS is named in the error; with libfcam_ort_ops.so (explicit or from the environment) the C++
    output equals the Python runtime's (both post-process the graph's map at the original size)."""
    model = exported_fcam("custom-op")
    env = {k: v for k, v in os.environ.items() if k != "FCAM_ORT_OPS"}
    proc = cpp_tools.localize(install_dir, model, images[:1], env=env)
    assert proc.returncode == 2
    assert "BackendUnavailableError" in proc.stderr and "FCAM_ORT_OPS" in proc.stderr
    proc = cpp_tools.localize(
        install_dir,
        model,
        images[:1],
        env={**env, "FCAM_ORT_OPS": str(tmp_path / "nope.so")},
    )
    assert proc.returncode == 2 and "BackendUnavailableError" in proc.stderr and "nope.so" in proc.stderr
    lib = _ort_ops_library()
    if lib is None:
        pytest.skip("libfcam_ort_ops.so not built (make kernels) and FCAM_ORT_OPS unset")
    _compare(
        cpp_tools,
        install_dir,
        model,
        images[:8],
        tmp_path / "explicit",
        "--custom-ops",
        str(lib),
        plugin_library=lib,
    )
    via_env = cpp_tools.localize_json(
        install_dir,
        model,
        images[:8],
        tmp_path / "env",
        env={**env, "FCAM_ORT_OPS": str(lib)},
    )
    explicit = cpp_tools.localize_json(install_dir, model, images[:8], tmp_path / "explicit2", "--custom-ops", str(lib))
    assert via_env.results == explicit.results


def test_bogus_ort_ops_env_does_not_break_a_standard_graph(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    env = {**os.environ, "FCAM_ORT_OPS": str(tmp_path / "does-not-exist.so")}
    proc = cpp_tools.localize(install_dir, probe_model, images[:2], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 2 and proc.stderr == ""


# ---- typed errors and the probe cases of issue 12 ----------------------------------------------------------------
def _only_app_lines(stderr: str) -> None:
    """Nothing but the app's own "fcam_localize: ..." lines on stderr (libpng / libjpeg / ORT stay silent)."""
    for line in stderr.splitlines():
        assert line.startswith("fcam_localize: "), f"foreign stderr line: {line!r}"


def test_typed_errors_and_exit_codes(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    import onnx
    from onnx import TensorProto, helper

    junk = tmp_path / "notes.png"
    junk.write_text("hello")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[4].read_bytes()[:200])
    proc = cpp_tools.localize(install_dir, probe_model, [images[0], tmp_path / "missing.png", junk, truncated])
    assert proc.returncode == 1  # per-image failures: the good image is still reported
    assert proc.stdout.count("\n") == 1 and "class" in proc.stdout and "score" in proc.stdout
    assert proc.stderr.count("ImageError") == 3
    assert "cannot open" in proc.stderr and "not a PNG or JPEG" in proc.stderr and "corrupt" in proc.stderr
    _only_app_lines(proc.stderr)

    g = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["logits"])],
        "plain",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.UINT8, [1, 4, 4, 3])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(plain))
    proc = cpp_tools.localize(install_dir, plain, images[:1])
    assert proc.returncode == 2 and "ModelFormatError" in proc.stderr and "not an fcam-deploy model" in proc.stderr

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    proc = cpp_tools.localize(install_dir, plan, images[:1])
    assert proc.returncode == 2 and "BackendUnavailableError" in proc.stderr and "TensorRT" in proc.stderr

    proc = cpp_tools.localize(install_dir, tmp_path / "model.bin", images[:1])
    assert proc.returncode == 2 and "unknown model kind" in proc.stderr
    proc = cpp_tools.localize(install_dir, probe_model, images[:1], "--backend", "tensorrt")
    assert proc.returncode == 2 and "ONNX file" in proc.stderr
    for device in ("gpu7", "cuda:99999999999", "cuda:-1", "cuda:"):
        proc = cpp_tools.localize(install_dir, probe_model, images[:1], "--device", device)
        assert proc.returncode == 2 and "InputError" in proc.stderr and "cuda:N" in proc.stderr, (device, proc.stderr)
    for flag, value in (
        ("--max-boxes", "0"),
        ("--max-boxes", "x"),
        ("--threads", "-2"),
    ):
        proc = cpp_tools.localize(install_dir, probe_model, images[:1], flag, value)
        assert proc.returncode == 2 and flag in proc.stderr


def _jpeg_bytes(size: tuple[int, int] = (16, 16), **save: Any) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, format="JPEG", **save)
    return buf.getvalue()


def _declare_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Patch the frame header (SOF0) of a baseline JPEG to declare another size; the entropy data stays tiny."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9 :]


def _limit_address_space(gib: float) -> Callable[[], None]:
    def _set() -> None:
        limit = int(gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return _set


def test_jpeg_bomb_and_truncation_are_image_errors(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    """Issue 12 C++ 1-2: a 60000x60000 JPEG header is refused before any allocation (the process runs under a 1.5 GiB
    address-space limit, 60000^2 RGB would be 10 GiB); a truncated JPEG and corrupt entropy data are ImageErrors,
    not predictions on grey; libjpeg prints nothing."""
    good = _jpeg_bytes()
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_declare_jpeg_size(good, 60000, 60000))
    assert len(bomb.read_bytes()) < 1000
    photo = next(p for p in images if p.name == "photo.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo[: len(photo) // 2])
    corrupt = tmp_path / "corrupt.jpg"
    data = bytearray(_jpeg_bytes((64, 64)))
    sos = data.index(b"\xff\xda")
    data[sos + 40 : sos + 60] = b"\xff\x00" * 10  # stuffed bytes inside the scan: valid markers, wrong data
    data[sos + 70 : sos + 72] = b"\xff\xd0"  # a restart marker where none is expected
    corrupt.write_bytes(bytes(data))
    proc = subprocess.run(
        [
            str(install_dir / "bin" / "fcam_localize"),
            str(probe_model),
            str(images[0]),
            str(bomb),
            str(truncated),
            str(corrupt),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        preexec_fn=_limit_address_space(1.5),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("\n") == 1  # only the good image
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all("ImageError" in line for line in lines), proc.stderr
    assert "60000x60000" in lines[0] and "decompression-bomb" in lines[0]
    assert "truncated.jpg" in lines[1] and "Premature end" in lines[1]
    assert "corrupt.jpg" in lines[2] and "corrupt" in lines[2].lower()
    _only_app_lines(proc.stderr)


def _patched_probe(model: Path, out: Path, **props: str) -> Path:
    import onnx

    m = onnx.load(str(model))
    for p in m.metadata_props:
        key = p.key.removeprefix("fcam_deploy.")
        if key in props:
            p.value = props[key]
    onnx.save(m, str(out))
    return out


# (metadata overrides, text the error must contain): each case was a crash, UB or silent acceptance before
_METADATA_CASES: list[tuple[dict[str, str], str]] = [
    (
        {"input_size": "[30000, 30000]"},
        "input_size[0] (H) must be an integer in [1, 4096]",
    ),
    ({"input_size": "[1e10, 32]"}, "must be an integer in [1, 4096]"),
    ({"input_size": "[32.7, 32.2]"}, "must be an integer"),
    (
        {"input_size": "[64, 64]"},
        "metadata input_size [64, 64] but the graph input 'images' is (?, 32, 32, 3)",
    ),
    ({"class_names": '["a", "b"]'}, "2 class names but the graph has 3 logits"),
    ({"class_names": '"abcd"'}, "malformed JSON"),
    ({"std": "[0.229, 0, 0.225]"}, "std > 0"),
    ({"mean": "[NaN, 0.5, 0.5]"}, "malformed JSON"),
    ({"method": "foo"}, "unknown method 'foo'"),
    ({"max_boxes": "1e300"}, "max_boxes must be an integer"),
    ({"max_boxes": "-3"}, "max_boxes must be an integer"),
    ({"tau": "nan"}, "tau is not a finite number"),
    ({"dynamic_batch": "maybe"}, "dynamic_batch 'maybe'"),
]


def _metadata_probes(model: Path, tmp: Path) -> list[tuple[Path, str]]:
    return [
        (_patched_probe(model, tmp / f"meta{i}.onnx", **props), text) for i, (props, text) in enumerate(_METADATA_CASES)
    ]


def test_metadata_is_checked_against_the_graph(
    cpp_tools: Any,
    install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    for model, text in _metadata_probes(probe_model, tmp_path):
        proc = cpp_tools.localize(install_dir, model, images[:1])
        assert proc.returncode == 2, (text, proc.stdout, proc.stderr)
        assert "ModelFormatError" in proc.stderr and text in proc.stderr, (
            text,
            proc.stderr,
        )
        _only_app_lines(proc.stderr)


def test_probe_cases_clean_under_asan_ubsan(
    cpp_tools: Any,
    asan_install_dir: Path,
    images: list[Path],
    probe_model: Path,
    tmp_path: Path,
) -> None:
    """The library and app built with -fsanitize=address,undefined (-fno-sanitize-recover): the metadata probes
    (unchecked double->int casts were UB), decoder probes, bad devices and a normal run give their typed errors and
    no sanitizer report."""
    env = {
        **os.environ,
        "ASAN_OPTIONS": "detect_leaks=0",
        "UBSAN_OPTIONS": "print_stacktrace=1",
    }
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_declare_jpeg_size(_jpeg_bytes(), 60000, 60000))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(next(p for p in images if p.name == "photo.jpg").read_bytes()[:300])
    proc = cpp_tools.localize(
        asan_install_dir,
        probe_model,
        [*images[:8], bomb, truncated],
        "--json",
        "--batch",
        env=env,
    )
    assert proc.returncode == 1 and proc.stdout.count("\n") == 8, proc.stderr[-3000:]
    assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr, proc.stderr[-3000:]
    for model, text in _metadata_probes(probe_model, tmp_path):
        proc = cpp_tools.localize(asan_install_dir, model, images[:1], env=env)
        assert proc.returncode == 2 and text in proc.stderr, (text, proc.stderr[-3000:])
        assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr, proc.stderr[-3000:]
    proc = cpp_tools.localize(
        asan_install_dir,
        probe_model,
        images[:1],
        "--device",
        "cuda:99999999999",
        env=env,
    )
    assert proc.returncode == 2 and "InputError" in proc.stderr and "Sanitizer" not in proc.stderr


def test_cuda_request_reports_cpu_fallback(
    cpp_tools: Any, install_dir: Path, images: list[Path], probe_model: Path
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA EP; the fallback path is not taken")
    proc = cpp_tools.localize(install_dir, probe_model, images[:1], "--device", "cuda:0")
    assert proc.returncode == 0 and "runs on the CPU" in proc.stderr


# ---- library hygiene ---------------------------------------------------------------------------------------------
def _dynamic_symbols(lib: Path) -> list[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", "-C", str(lib)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split(" ", 2)[2] for line in out.stdout.splitlines() if line.strip()]


def _runpath(path: Path) -> str:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out)
    return m.group(1) if m else ""


def test_only_the_public_api_is_exported(install_dir: Path) -> None:
    """Issue 12 C++ 5: 89 exported symbols before (Ort:: and std:: instantiations included); now only fcam::
    declarations of the public header and the type information of fcam::Error."""
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) not found")
    lib = next((install_dir / "lib").glob("libfcam_localizer.so.*.*.*"))
    symbols = _dynamic_symbols(lib)
    public = (
        "fcam::Error::",
        "fcam::Localizer::",
        "fcam::error_kind_name(",
        "fcam::bytes_per_pixel(",
        "fcam::load_image(",
        "fcam::decode_image(",
        "fcam::resize_bilinear(",
        "fcam::has_tensorrt(",
        "fcam::version[abi:cxx11]()",
    )
    rtti = (
        "typeinfo for fcam::Error",
        "typeinfo name for fcam::Error",
        "vtable for fcam::Error",
    )
    foreign = [s for s in symbols if not (s.startswith(public) or s in rtti) or "detail" in s or "Impl" in s]
    assert not foreign, foreign
    assert any(s.startswith("fcam::Localizer::predict(") for s in symbols) and "typeinfo for fcam::Error" in symbols
    assert len(symbols) <= 32, symbols


def test_install_is_relocatable(install_dir: Path, images: list[Path], probe_model: Path, tmp_path: Path) -> None:
    """Issue 12 C++ 5: no RUNPATH into the build tree; the install folder moved elsewhere still runs, with the ONNX
    Runtime library next to it."""
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) not found")
    lib = next((install_dir / "lib").glob("libfcam_localizer.so.*.*.*"))
    assert _runpath(lib) == "$ORIGIN"
    assert _runpath(install_dir / "bin" / "fcam_localize") == "$ORIGIN/../lib"
    assert (install_dir / "lib" / "libonnxruntime.so.1").is_file()
    moved = tmp_path / "elsewhere"
    shutil.copytree(install_dir, moved, symlinks=True)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    ldd = subprocess.run(
        ["ldd", str(moved / "bin" / "fcam_localize")],
        capture_output=True,
        check=False,
        text=True,
        env=env,
    )
    ort_line = next(line for line in ldd.stdout.splitlines() if "libonnxruntime" in line)
    assert str(moved) in ort_line, ldd.stdout
    a, b = (
        subprocess.run(
            [str(root / "bin" / "fcam_localize"), "--json", str(probe_model), str(images[2])],
            capture_output=True,
            check=False,
            text=True,
            env=env,
            timeout=120,
        )
        for root in (moved, install_dir)
    )
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout


# ---- the installed package from a downstream project -------------------------------------------------------------
def test_api_check(consumer: Path, images: list[Path], probe_model: Path) -> None:
    """Image views (RGB/BGR/RGBA/BGRA/GRAY, padded strides, no copy), optional outputs, batches, loading and
    decoding from memory, version macros and the throw contract, as a downstream project uses them."""
    for image in (
        images[4],
        next(p for p in images if p.name == "photo.jpg"),
    ):  # a PNG and a JPEG
        proc = subprocess.run(
            [str(consumer / "api_check"), str(probe_model), str(image)],
            capture_output=True,
            check=False,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        m = re.fullmatch(r"api_check OK (\d+)\n", proc.stdout)
        assert m and int(m.group(1)) >= 35, proc.stdout


def test_pil_exact_resize(consumer: Path, images: list[Path], tmp_path: Path) -> None:
    """fcam::resize_bilinear equals the NumPy port of Pillow 13's algorithm and the installed Pillow byte for byte,
    in both pass orders."""
    import PIL
    from PIL import Image

    exe = consumer / "resize_check"
    named = {p.name: p for p in images}
    big, rgba, gray, pal = (
        named["rgb4_200x130.png"],
        named["mode_RGBA.png"],
        named["mode_L.png"],
        named["mode_P.png"],
    )
    cases = [
        (big, 64, 64),
        (big, 224, 224),
        (images[2], 13, 90),
        (images[3], 64, 31),
        (images[5], 5, 1),
        (gray, 33, 47),
        (rgba, 40, 40),
        (pal, 17, 300),
        (named["photo.jpg"], 64, 64),
        (named["gray.jpg"], 50, 21),
        (images[6], 32, 32),
        (images[7], 64, 20),
        (big, 100, 20),
        (images[7], 90, 333),
    ]
    header = Path(__file__).resolve().parents[2] / "export" / "cpp" / "include" / "fcam" / "localizer.hpp"
    version = re.search(r'#define FCAM_LOCALIZER_VERSION_STRING "([^"]+)"', header.read_text()).group(1)
    vertical_first = 0
    for path, w, h in cases:
        out = tmp_path / "out.rgb"
        proc = subprocess.run(
            [str(exe), str(path), str(w), str(h), str(out)],
            capture_output=True,
            check=False,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [version, str(w), str(h)]
        src = Image.open(path).convert("RGB")
        sh, sw = src.height, src.width
        vertical_first += (sh - h) > 0 and (sh - h) > 2 * (sw - w)
        got = np.frombuffer(out.read_bytes(), dtype=np.uint8).reshape(h, w, 3)
        want = pillow_bilinear(np.asarray(src, dtype=np.uint8), w, h)
        assert np.array_equal(got, want), (
            path.name,
            w,
            h,
            int(np.abs(got.astype(int) - want).max()),
        )
        if int(PIL.__version__.split(".")[0]) >= 13:
            assert np.array_equal(got, np.asarray(src.resize((w, h), Image.Resampling.BILINEAR))), (path.name, w, h)
    assert vertical_first >= 4


def test_pillow_port_matches_installed_pillow() -> None:
    """The NumPy oracle is Pillow: random sizes, both pass orders."""
    import PIL
    from PIL import Image

    if int(PIL.__version__.split(".")[0]) < 13:
        pytest.skip(f"Pillow {PIL.__version__} < 13 always runs the horizontal pass first")
    rng = np.random.default_rng(3)
    orders = set()
    for _ in range(60):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 90, 4))
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(a).resize((ow, oh), Image.Resampling.BILINEAR))
        assert np.array_equal(pillow_bilinear(a, ow, oh), want), (h, w, oh, ow)
        orders.add((h - oh) > 0 and (h - oh) > 2 * (w - ow))
    assert orders == {True, False}


def test_concurrent_predict_is_consistent(consumer: Path, images: list[Path], probe_model: Path) -> None:
    proc = subprocess.run(
        [str(consumer / "thread_check"), str(probe_model), *map(str, images[:6])],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["calls", str(4 * 8 * 6), "mismatches", "0"]
