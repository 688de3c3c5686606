"""The C++ embedding (export/cpp): build it with export/cpp/build.sh, run the fcam_localize sample app and check
that its class, score, boxes and mask equal the Python runtime's (fcam_deploy.runtime.Localizer, onnxruntime
backend) on the same image files; check the installed package works through find_package and that its resize is
PIL's bilinear resize byte for byte.

Needs cmake, a C++17 compiler, libpng/libjpeg headers and npm (or cached ORT headers). Without them the tests skip,
unless FCAM_REQUIRE_CPP=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
_PRECISION_BITS = 22  # Pillow Resample.c: 32 - 8 - 2


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
        out.append((xmin, [int(v * (1 << _PRECISION_BITS) + (0.5 if v >= 0 else -0.5)) for v in w]))
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
    """Independent NumPy port of upstream Pillow's bilinear resize (horizontal pass, then vertical)."""
    if a.shape[1] != out_w:
        a = _pillow_pass(a, out_w)
    if a.shape[0] != out_h:
        a = _pillow_pass(a.transpose(1, 0, 2), out_h).transpose(1, 0, 2)
    return np.ascontiguousarray(a)

CPP = REPO / "export" / "cpp"
BUILD = Path(os.environ.get("FCAM_CPP_BUILD", CPP / "build"))


def _unavailable(reason: str) -> None:
    if os.environ.get("FCAM_REQUIRE_CPP") == "1":
        pytest.fail(f"C++ build required (FCAM_REQUIRE_CPP=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def install_dir() -> Path:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not found")
    env = dict(os.environ, PYTHON=sys.executable, FCAM_CPP_BUILD=str(BUILD))
    proc = subprocess.run(["bash", str(CPP / "build.sh")], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        if "npm is needed" in tail:
            _unavailable("npm missing and no cached ONNX Runtime headers")
        if "Could NOT find PNG" in tail or "Could NOT find JPEG" in tail:
            _unavailable("libpng/libjpeg development files missing (apt-get install libpng-dev libjpeg-dev)")
        pytest.fail(f"export/cpp/build.sh failed:\n{tail}")
    app = BUILD / "install" / "bin" / "fcam_localize"
    assert app.is_file()
    return BUILD / "install"


def _localize(install: Path, model: Path, images: list[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(install / "bin" / "fcam_localize"), *extra, str(model), *map(str, images)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """PNG/JPEG files of several sizes and modes (exact model size, up- and down-scaling, gray, RGBA, palette)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cpp_images")
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(32, 32), (64, 64), (50, 77), (20, 15), (200, 130), (1, 9)]):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(xx / 7 + i), 128 + 100 * np.cos(yy / 5 + i), rng.integers(0, 256, (h, w))],
                       -1).clip(0, 255).astype(np.uint8)
        p = root / f"rgb{i}_{h}x{w}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    base = Image.open(out[4])
    for mode in ("L", "RGBA", "P"):
        p = root / f"mode_{mode}.png"
        base.convert(mode).save(p)
        out.append(p)
    p = root / "photo.jpg"
    base.save(p, quality=90)
    out.append(p)
    p = root / "gray.jpg"
    base.convert("L").save(p, quality=85)
    out.append(p)
    return out


def _python_localizer(model: Path, **kw: Any) -> Any:
    from fcam_deploy.runtime import Localizer

    return Localizer.load(model, backend="onnxruntime", **kw)


def _compare(install: Path, model: Path, images: list[Path], *extra: str, **load_kw: Any) -> None:
    from PIL import Image

    proc = _localize(install, model, images, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(images)
    loc = _python_localizer(model, **load_kw)
    h, w = loc.metadata.input_size
    strict = 0
    for line, path in zip(lines, images, strict=True):
        got = json.loads(line)
        pil = Image.open(path).convert("RGB")
        ref = loc.predict(pil)
        assert got["image"] == str(path)
        assert got["size"] == list(ref.size)
        rgb = np.asarray(pil, dtype=np.uint8)
        same_input = np.array_equal(pillow_bilinear(rgb, w, h), np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR)))
        if same_input:
            # identical graph input -> identical ORT outputs -> identical class, score (double softmax) and boxes
            strict += 1
            assert got["class_index"] == ref.class_index and got["class_name"] == ref.class_name, path
            assert got["score"] == pytest.approx(ref.score, rel=1e-12, abs=1e-15), path
            assert [tuple(b) for b in got["boxes"]] == [tuple(b) for b in ref.boxes], path
            # the map's upsampling is float32 like torch's, up to rounding order: sums agree to float32 precision
            # and the mask may differ only at pixels within an ulp of the threshold
            assert got["map_sum"] == pytest.approx(float(ref.map.astype(np.float64).sum()), rel=1e-5, abs=1e-4)
            assert abs(got["mask_pixels"] - int(ref.mask.sum())) <= 2, path
        else:
            # The installed Pillow resized this image in another pass order than upstream Pillow's Resample.c
            # (which the C++ library implements), so some input bytes differ by 1: the results agree closely.
            assert got["score"] == pytest.approx(ref.score, abs=1e-2), path
            assert got["map_sum"] == pytest.approx(float(ref.map.astype(np.float64).sum()), rel=2e-2), path
    assert strict >= 2, f"only {strict} of {len(images)} images could be compared exactly"


def test_probe_graph_matches_python_runtime(install_dir: Path, images: list[Path], tmp_path: Path) -> None:
    from fcam_deploy.export.tensorrt import write_probe_onnx

    model = write_probe_onnx(tmp_path / "probe.onnx")
    _compare(install_dir, model, images)


@pytest.fixture(scope="session")
def exported_fcam(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``exported(postprocess) -> Path``: an F-CAM graph from the real exporter (ResNet18-s8 trunk, random weights)."""
    import torch

    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.export.onnx_export import export_graph
    from fcam_deploy.models import FCAM, build_classifier
    from fcam_deploy.runtime.base import ModelMetadata

    torch.manual_seed(0)
    clf = build_classifier("resnet18_s8", num_classes=3).eval()
    fcam = FCAM(clf).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)  # give the random decoder's map structure
    root = tmp_path_factory.mktemp("cpp_models")
    cache: dict[str, Path] = {}

    def _get(postprocess: str) -> Path:
        if postprocess not in cache:
            mean, std, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (64, 64)
            meta = ModelMetadata(class_names=("cat", "dog", "bird"), input_size=size, mean=mean, std=std, tau=0.4,
                                 method="fcam", postprocess=postprocess, max_boxes=4 if postprocess == "custom-op" else 0)
            graph = LocalizationGraph(fcam, "fcam", postprocess, size, mean, std, 0.4, max_boxes=4)
            out = root / f"fcam_{postprocess}.onnx"
            export_graph(graph, meta, out)
            cache[postprocess] = out
        return cache[postprocess]

    return _get


@pytest.mark.slow
def test_exported_fcam_graph_matches_python_runtime(install_dir: Path, images: list[Path], exported_fcam: Any) -> None:
    _compare(install_dir, exported_fcam("onnx"), images[:6])


def _ort_ops_library() -> Path | None:
    env = os.environ.get("FCAM_ORT_OPS")
    if env:
        return Path(env)
    built = REPO / "kernels" / "build" / "libfcam_ort_ops.so"
    return built if built.is_file() else None


@pytest.mark.slow
def test_custom_op_graph(install_dir: Path, images: list[Path], exported_fcam: Any,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph with the fused fcam::CamPostprocess node: without the library a typed error naming FCAM_ORT_OPS; with
    libfcam_ort_ops.so the C++ output equals the Python runtime's (boxes come from the graph)."""
    model = exported_fcam("custom-op")
    env_ops = os.environ.pop("FCAM_ORT_OPS", None)
    try:
        proc = _localize(install_dir, model, images[:1])
    finally:
        if env_ops is not None:
            os.environ["FCAM_ORT_OPS"] = env_ops
    assert proc.returncode == 2
    assert "BackendUnavailableError" in proc.stderr and "FCAM_ORT_OPS" in proc.stderr
    lib = _ort_ops_library()
    if lib is None:
        pytest.skip("libfcam_ort_ops.so not built (make kernels) and FCAM_ORT_OPS unset")
    _compare(install_dir, model, images[:6], "--custom-ops", str(lib), plugin_library=lib)


def test_typed_errors_and_exit_codes(install_dir: Path, images: list[Path], tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from fcam_deploy.export.tensorrt import write_probe_onnx

    model = write_probe_onnx(tmp_path / "probe.onnx")
    junk = tmp_path / "notes.png"
    junk.write_text("hello")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[4].read_bytes()[:200])
    proc = _localize(install_dir, model, [images[0], tmp_path / "missing.png", junk, truncated])
    assert proc.returncode == 1  # per-image failures: the good image is still reported
    assert proc.stdout.count("\n") == 1 and "class" in proc.stdout and "score" in proc.stdout
    assert proc.stderr.count("ImageError") == 3
    assert "cannot open" in proc.stderr and "not a PNG or JPEG" in proc.stderr and "corrupt" in proc.stderr

    g = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "plain",
                          [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 4, 4, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.UINT8, [1, 4, 4, 3])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(plain))
    proc = _localize(install_dir, plain, images[:1])
    assert proc.returncode == 2 and "ModelFormatError" in proc.stderr and "not an fcam-deploy model" in proc.stderr

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    proc = _localize(install_dir, plan, images[:1])
    assert proc.returncode == 2 and "BackendUnavailableError" in proc.stderr and "TensorRT" in proc.stderr

    proc = _localize(install_dir, tmp_path / "model.bin", images[:1])
    assert proc.returncode == 2 and "unknown model kind" in proc.stderr
    proc = _localize(install_dir, model, images[:1], "--backend", "tensorrt")
    assert proc.returncode == 2 and "ONNX file" in proc.stderr
    proc = _localize(install_dir, model, images[:1], "--device", "gpu7")
    assert proc.returncode == 2 and "InputError" in proc.stderr


def test_cuda_request_reports_cpu_fallback(install_dir: Path, images: list[Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from fcam_deploy.export.tensorrt import write_probe_onnx

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA EP; the fallback path is not taken")
    model = write_probe_onnx(tmp_path / "probe.onnx")
    proc = _localize(install_dir, model, images[:1], "--device", "cuda:0")
    assert proc.returncode == 0 and "runs on the CPU" in proc.stderr


@pytest.fixture(scope="session")
def consumer(install_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/cpp/consumer (a downstream project that only uses find_package(fcam_localizer))."""
    build = tmp_path_factory.mktemp("consumer")
    cfg = subprocess.run(["cmake", "-S", str(Path(__file__).parent / "consumer"), "-B", str(build),
                          f"-DCMAKE_PREFIX_PATH={install_dir}", "-DCMAKE_BUILD_TYPE=Release"],
                         capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, timeout=300)
    assert bld.returncode == 0, bld.stdout + bld.stderr
    return build


def test_pil_exact_resize(consumer: Path, images: list[Path], tmp_path: Path) -> None:
    """fcam::resize_bilinear equals upstream Pillow's algorithm byte for byte (NumPy port above) and the installed
    Pillow within 1 (its pass order may differ, see export/README.md)."""
    from PIL import Image

    exe = consumer / "resize_check"
    cases = [(images[4], 64, 64), (images[4], 224, 224), (images[2], 13, 90), (images[3], 64, 31), (images[5], 5, 1),
             (images[6], 33, 47), (images[7], 40, 40), (images[8], 17, 300), (images[9], 64, 64), (images[10], 50, 21)]
    for path, w, h in cases:
        out = tmp_path / "out.rgb"
        proc = subprocess.run([str(exe), str(path), str(w), str(h), str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["0.1.0", str(w), str(h)]
        src = Image.open(path).convert("RGB")
        got = np.frombuffer(out.read_bytes(), dtype=np.uint8).reshape(h, w, 3)
        want = pillow_bilinear(np.asarray(src, dtype=np.uint8), w, h)
        assert np.array_equal(got, want), (path.name, w, h, int(np.abs(got.astype(int) - want).max()))
        pil = np.asarray(src.resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
        assert int(np.abs(got.astype(np.int16) - pil).max()) <= 1, (path.name, w, h)


def test_pillow_port_matches_installed_pillow_when_one_pass() -> None:
    """The NumPy oracle is Pillow: on one-axis resizes (no pass order involved) it equals the installed Pillow."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for h, w, oh, ow in [(40, 57, 40, 13), (40, 57, 40, 200), (33, 20, 7, 20), (33, 20, 90, 20), (1, 50, 1, 3)]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(a).resize((ow, oh), Image.Resampling.BILINEAR))
        assert np.array_equal(pillow_bilinear(a, ow, oh), want), (h, w, oh, ow)


def test_concurrent_predict_is_consistent(consumer: Path, images: list[Path], tmp_path: Path) -> None:
    from fcam_deploy.export.tensorrt import write_probe_onnx

    model = write_probe_onnx(tmp_path / "probe.onnx")
    proc = subprocess.run([str(consumer / "thread_check"), str(model), *map(str, images[:6])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["calls", str(4 * 8 * 6), "mismatches", "0"]
